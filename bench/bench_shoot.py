"""A wedding's worth of 12-megapixel JPEGs to XMP sidecars, through the real CLI and a real server.

    .venv/bin/python bench/bench_shoot.py [--photos 1000] [--database-url postgres://...] [--web-workers 2]

1. Makes (once) a cache of 12 MP JPEGs under var/bench-shoot/ (never committed): photos that ship with
   scikit-image and scikit-learn, upscaled to 4000x3000 with a little noise (like bench_api.py's file,
   ~2-3 MB each). 20 distinct photos are encoded; the others are byte copies of them with a JPEG comment
   of their own, so every file is distinct on disk and costs the client a full read and decode.
2. Starts gunicorn on a scratch database (SQLite, or --database-url) and creates an editor.
3. Runs `python -m personalize.client predict FOLDER --xmp --out SIDECARS` as a subprocess, timed from
   launch to exit, then once more to show the resumed run skips everything.

Reports the wall clock, photos/s, bytes sent per photo (as the CLI counted them), and where the time goes:
CPU seconds of the client's decoding (its worker processes), the whole client, and the server's processes
(gunicorn), plus the summed round trips of the batch requests. Goals (issue 16): <= 30 s, <= 50 KB/photo.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch_server import scratch_server  # noqa: E402

CACHE = ROOT / "var" / "bench-shoot"
DISTINCT = 20
SOURCES = [
    "astronaut", "coffee", "chelsea", "rocket", "china", "flower", "cat", "retina", "immunohistochemistry",
    "colorwheel",
]  # fmt: skip


def source(name: str) -> np.ndarray:
    if name in ("china", "flower"):
        from sklearn.datasets import load_sample_images

        return load_sample_images().images[("china", "flower").index(name)]
    from skimage import data

    return np.ascontiguousarray(getattr(data, name)()[..., :3])


def twelve_megapixel(index: int) -> bytes:
    """A 4000x3000 JPEG (quality 92): a shipped photo, mirrored for odd indices, upscaled, with noise."""
    image = source(SOURCES[index % len(SOURCES)])
    if index // len(SOURCES) % 2:
        image = image[:, ::-1]
    big = Image.fromarray(np.ascontiguousarray(image)).resize((4000, 3000), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(index).integers(-6, 7, size=(3000, 4000, 3), dtype=np.int16)
    pixels = np.clip(np.asarray(big).astype(np.int16) + noise, 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def with_comment(jpeg: bytes, text: str) -> bytes:
    """The same JPEG with a COM segment after SOI: other bytes, the same pixels."""
    payload = text.encode()
    return jpeg[:2] + b"\xff\xfe" + (len(payload) + 2).to_bytes(2, "big") + payload + jpeg[2:]


def photo_cache(count: int) -> Path:
    folder = CACHE / f"jpeg-{count}"
    if folder.is_dir() and len(list(folder.glob("*.jpg"))) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    print(f"making {count} 12 MP JPEGs in {folder.relative_to(ROOT)} (once) ...", file=sys.stderr)
    distinct = [twelve_megapixel(i) for i in range(min(DISTINCT, count))]
    for i in range(count):
        (folder / f"IMG_{i:04d}.jpg").write_bytes(with_comment(distinct[i % len(distinct)], f"shot {i}"))
    return folder


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and all its live descendants (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total, pids = 0.0, [pid]
    while pids:
        current = pids.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / ticks
            for task in Path(f"/proc/{current}/task").iterdir():
                pids.extend(int(c) for c in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=1000)
    parser.add_argument("--web-workers", type=int, default=2, help="gunicorn processes")
    parser.add_argument("--database-url", default="", help="default: a scratch SQLite file")
    parser.add_argument("--jobs", type=int, default=os.cpu_count(), help="the CLI's decoding processes")
    args = parser.parse_args()

    photos = photo_cache(args.photos)
    size_mb = sum(p.stat().st_size for p in photos.glob("*.jpg")) / args.photos / 1e6
    python = sys.executable
    with scratch_server("bench-shoot-", args.web_workers, args.database_url) as server:
        sidecars = server.scratch / "sidecars"
        cli = [
            python, "-m", "personalize.client", "predict", str(photos), "--xmp", "--out", str(sidecars),
            "--server", server.url, "--token", server.token, "--jobs", str(args.jobs),
        ]  # fmt: skip
        client_env = {**server.env, "PERSONALIZE_CONFIG": str(server.scratch / "client.json")}
        # Warm the server (model load) the way a client's first call would, outside the timing.
        request = urllib.request.Request(
            f"{server.url}/api/v1/predict/batch", headers={"Authorization": f"Token {server.token}"}
        )
        urllib.request.urlopen(request, timeout=30).read()

        server_cpu0, client_cpu0 = cpu_seconds(server.process.pid), children_cpu()
        started = time.perf_counter()
        first = subprocess.run(cli, cwd=ROOT, env=client_env, capture_output=True, text=True)
        wall = time.perf_counter() - started
        server_cpu, client_cpu = cpu_seconds(server.process.pid) - server_cpu0, children_cpu() - client_cpu0
        started = time.perf_counter()
        second = subprocess.run(cli, cwd=ROOT, env=client_env, capture_output=True, text=True)
        resumed_wall = time.perf_counter() - started
    if first.returncode != 0:
        print(first.stdout, first.stderr[-3000:], sep="\n", file=sys.stderr)
        return 1

    written = len(list(sidecars.glob("*.xmp")))
    summary = first.stdout
    sent = re.search(r"sent ([\d.]+ \w+) \(([\d.]+) (\w+) per photo\) in (\d+) request", summary)
    per_photo_kb = float(sent.group(2)) * {"B": 1 / 1024, "KB": 1, "MB": 1024}[sent.group(3)]
    decode_cpu = float(re.search(r"decoding ([\d.]+) s of CPU", summary).group(1))
    round_trips = float(re.search(r"requests ([\d.]+) s", summary).group(1))
    print(
        f"{args.photos} JPEGs of 4000x3000 ({size_mb:.1f} MB each) -> {written} XMP sidecars; "
        f"gunicorn x{args.web_workers}, {'PostgreSQL' if 'postgres' in server.env['DATABASE_URL'] else 'SQLite'}, "
        f"client decoding on {args.jobs} processes, {os.cpu_count()} cores shared by all"
    )
    print(f"wall clock {wall:.1f} s, {args.photos / wall:.1f} photos/s (goal <= 30 s)")
    print(
        f"sent {sent.group(1)}: {per_photo_kb:.1f} KB per photo in {sent.group(4)} requests (goal <= 50 KB)"
    )
    print(
        f"CPU: client {client_cpu:.1f} s (of which decoding previews {decode_cpu:.1f} s), "
        f"server {server_cpu:.1f} s; batch requests' summed round trips {round_trips:.1f} s"
    )
    print(f"resumed run: {second.stdout.splitlines()[0] if second.stdout else second.stderr[-300:]} "
          f"({resumed_wall:.1f} s wall)")  # fmt: skip
    print("command: .venv/bin/python bench/bench_shoot.py " + " ".join(sys.argv[1:]))
    shutil.rmtree(server.scratch, ignore_errors=True)
    ok = wall <= 30 and per_photo_kb <= 50 and written == args.photos
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
