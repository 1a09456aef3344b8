"""Prediction latency under load: a 12-megapixel JPEG upload, 8 concurrent clients, a real server.

    .venv/bin/python bench/bench_api.py [--requests 400] [--concurrency 8] [--web-workers 3]

Starts gunicorn (several processes) on a free port against a scratch SQLite database and media root,
creates an editor, and drives POST /api/v1/predict with ApacheBench (`ab`, Debian package apache2-utils),
a real HTTP load generator, sending a multipart body with a 4000x3000 JPEG. Prints p50/p90/p99 latency and
requests per second as ab measured them.

Then, in the same run and on the same cores, the decode-only ceiling: one process per core decoding the
same file in a loop exactly as the server does (personalize.images.UploadedPhoto.decode at the prediction
size, under the allocator settings of rlcore/malloc.py that every web process applies), no HTTP.
Requests/s over that ceiling is the share of the machine the rest of the request (HTTP, multipart,
authentication, model, database, the load generator) leaves to decoding; the goal is >= 85 %.

Also the CPU each request cost (Linux: from /proc): the gunicorn workers' and ab's, beside the decode
alone (cores / ceiling). Requests/s moves by a few percent between runs on a quiet machine; the CPU per
request is steadier, and is what to compare when a change saves a millisecond.
"""

import argparse
import io
import multiprocessing
import os
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch_server import scratch_server  # noqa: E402


def twelve_megapixel_jpeg() -> bytes:
    from skimage import data

    image = Image.fromarray(data.astronaut()).resize((4000, 3000), Image.Resampling.BICUBIC)
    noise = np.random.default_rng(0).integers(-6, 7, size=(3000, 4000, 3))
    image = Image.fromarray(np.clip(np.asarray(image).astype(np.int16) + noise, 0, 255).astype(np.uint8))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=92)
    return buffer.getvalue()


def decode_loop(photo: bytes, seconds: float) -> int:
    """How many times this process decodes the photo, as a prediction does, in `seconds`."""
    import django

    django.setup()  # DJANGO_SETTINGS_MODULE set by decode_ceiling
    from personalize.images import inspect_bytes
    from personalize.inference import PREDICTION_SIDE
    from rlcore.malloc import keep_freed_memory

    keep_freed_memory()  # the allocator settings every web process runs with (personalize/wsgi.py)

    uploaded = inspect_bytes("image", photo)
    count, deadline = 0, time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        uploaded.decode(max_side=PREDICTION_SIDE)
        count += 1
    return count


def decode_ceiling(photo: bytes, seconds: float = 10.0) -> float:
    """Decodes per second with every core decoding (one process each), nothing else."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "personalize.settings")
    with multiprocessing.get_context("spawn").Pool(os.cpu_count()) as pool:
        pool.starmap(decode_loop, [(photo, 1.0)] * os.cpu_count())  # warm: imports, first decode
        counts = pool.starmap(decode_loop, [(photo, seconds)] * os.cpu_count())
    return sum(counts) / seconds


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process, from /proc/PID/stat (fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_seconds(pid: int) -> float:
    """CPU seconds of the process's children so far (gunicorn's workers, for its master)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return sum(process_cpu_seconds(int(child)) for child in children)


def multipart_body(field: str, filename: str, data: bytes, boundary: str) -> bytes:
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
        "Content-Type: image/jpeg\r\n\r\n"
    ).encode()
    return head + data + f"\r\n--{boundary}--\r\n".encode()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--web-workers", type=int, default=3, help="gunicorn processes")
    parser.add_argument("--database-url", default="", help="default: a scratch SQLite file")
    args = parser.parse_args()
    if not subprocess.run(["which", "ab"], capture_output=True).returncode == 0:
        print("error: ApacheBench (ab) is needed: apt-get install apache2-utils", file=sys.stderr)
        return 2

    with scratch_server("bench-api-", args.web_workers, args.database_url) as server:
        photo = twelve_megapixel_jpeg()
        boundary = "benchboundary7d1f"
        body_file = server.scratch / "body.bin"
        body_file.write_bytes(multipart_body("image", "photo.jpg", photo, boundary))
        ab = [
            "ab",
            "-q",
            "-n",
            str(args.requests),
            "-c",
            str(args.concurrency),
            "-k",
            "-p",
            str(body_file),
            "-T",
            f"multipart/form-data; boundary={boundary}",
            "-H",
            f"Authorization: Token {server.token}",
            f"{server.url}/api/v1/predict",
        ]
        # Warm every gunicorn process (model load, first decode) before measuring.
        subprocess.run(ab[:3] + [str(4 * args.web_workers)] + ab[4:], capture_output=True, check=True)
        workers_before = children_cpu_seconds(server.process.pid)
        ab_before = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = subprocess.run(ab, capture_output=True, text=True, check=True).stdout
        ab_after = resource.getrusage(resource.RUSAGE_CHILDREN)
        workers_ms = 1000 * (children_cpu_seconds(server.process.pid) - workers_before) / args.requests
        ab_ms = (
            1000
            * sum(getattr(ab_after, f) - getattr(ab_before, f) for f in ("ru_utime", "ru_stime"))
            / args.requests
        )

    ceiling = decode_ceiling(photo)
    failed = int(re.search(r"Failed requests:\s+(\d+)", result).group(1))
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", result)
    rps = float(re.search(r"Requests per second:\s+([\d.]+)", result).group(1))
    percentiles = dict(re.findall(r"^\s+(\d+)%\s+(\d+)", result, re.MULTILINE))
    print(
        f"photo: 4000x3000 JPEG, {len(photo) / 1e6:.1f} MB; {args.requests} requests, "
        f"{args.concurrency} concurrent clients, gunicorn x{args.web_workers}"
    )
    print(f"failed requests: {failed}; non-2xx: {non_2xx.group(1) if non_2xx else 0}")
    print(
        f"latency p50 {percentiles['50']} ms, p90 {percentiles['90']} ms, p99 {percentiles['99']} ms, "
        f"max {percentiles['100']} ms"
    )
    print(f"throughput: {rps:.1f} requests/s")
    print(
        f"decode-only ceiling: {ceiling:.1f} decodes/s on {os.cpu_count()} cores; requests/s are "
        f"{100 * rps / ceiling:.0f} % of it (goal >= 85 %)"
    )
    print(
        f"CPU per request: web workers {workers_ms:.1f} ms, load generator {ab_ms:.1f} ms; the decode "
        f"alone {1000 * os.cpu_count() / ceiling:.1f} ms (cores / ceiling)"
    )
    print("command: .venv/bin/python bench/bench_api.py " + " ".join(sys.argv[1:]))
    return 0 if failed == 0 and not non_2xx else 1


if __name__ == "__main__":
    sys.exit(main())
