"""Prediction latency under load: a 12-megapixel JPEG upload, 8 concurrent clients, a real server.

    .venv/bin/python bench/bench_api.py [--requests 400] [--concurrency 8] [--web-workers 3] [--rounds 3]

Starts gunicorn (several processes) on a free port against a scratch SQLite database and media root,
creates an editor, and drives POST /api/v1/predict with ApacheBench (`ab`, Debian package apache2-utils),
a real HTTP load generator, sending a multipart body with a 4000x3000 JPEG. Prints p50/p90/p99 latency and
requests per second as ab measured them.

Then, in the same run and on the same cores, the decode-only ceiling: one process per core decoding the
same file in a loop exactly as the server does (personalize.images.UploadedPhoto.decode at the prediction
size, under the allocator settings of rlcore/malloc.py that every web process applies), no HTTP.
Requests/s over that ceiling is the share of the machine the rest of the request (HTTP, multipart,
authentication, model, database, the load generator) leaves to decoding; the goal is >= 85 %.

The load and the ceiling are measured in --rounds alternating rounds (the requests split among them, the
server idle while the ceiling is measured), and the ratio reported is the median of the rounds' ratios: on
a shared or virtual machine the speed of the cores drifts by more than 5 % within a minute, and one load
run followed by one ceiling run read that drift as a change of the ratio.

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
import statistics
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


def decode_ceiling(pool, photo: bytes, seconds: float) -> float:
    """Decodes per second with every core decoding (one process of `pool` each), nothing else."""
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
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of load and ceiling")
    parser.add_argument("--ceiling-seconds", type=float, default=10.0, help="decoding, over all rounds")
    args = parser.parse_args()
    if args.rounds < 1 or args.requests < args.rounds:
        parser.error("--rounds must be at least 1 and at most --requests")
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
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "personalize.settings")
        with multiprocessing.get_context("spawn").Pool(os.cpu_count()) as pool:
            decode_ceiling(pool, photo, 1.0)  # warm: imports, first decode
            rounds = [
                measure_round(
                    server, ab, args.requests // args.rounds, pool, photo, args.ceiling_seconds / args.rounds
                )
                for _ in range(args.rounds)
            ]

    requests = sum(r["requests"] for r in rounds)
    failed = sum(r["failed"] for r in rounds)
    non_2xx = sum(r["non_2xx"] for r in rounds)
    rps = requests / sum(r["seconds"] for r in rounds)
    ceiling = statistics.mean(r["ceiling"] for r in rounds)
    ratio = statistics.median(r["rps"] / r["ceiling"] for r in rounds)
    workers_ms = 1000 * sum(r["workers_cpu"] for r in rounds) / requests
    ab_ms = 1000 * sum(r["ab_cpu"] for r in rounds) / requests
    percentiles = {
        p: statistics.median(int(r["percentiles"][p]) for r in rounds) for p in ("50", "90", "99", "100")
    }
    print(
        f"photo: 4000x3000 JPEG, {len(photo) / 1e6:.1f} MB; {requests} requests in {args.rounds} rounds, "
        f"{args.concurrency} concurrent clients, gunicorn x{args.web_workers}"
    )
    print(f"failed requests: {failed}; non-2xx: {non_2xx}")
    print(
        f"latency (the median of the rounds') p50 {percentiles['50']:.0f} ms, p90 {percentiles['90']:.0f} ms, "
        f"p99 {percentiles['99']:.0f} ms, max {percentiles['100']:.0f} ms"
    )
    for i, r in enumerate(rounds, 1):
        print(
            f"round {i}: {r['rps']:.1f} requests/s, ceiling {r['ceiling']:.1f} decodes/s: "
            f"{100 * r['rps'] / r['ceiling']:.0f} %"
        )
    print(f"throughput: {rps:.1f} requests/s")
    print(
        f"decode-only ceiling: {ceiling:.1f} decodes/s on {os.cpu_count()} cores; requests/s are "
        f"{100 * ratio:.0f} % of it, the median of the rounds (goal >= 85 %)"
    )
    print(
        f"CPU per request: web workers {workers_ms:.1f} ms, load generator {ab_ms:.1f} ms; the decode "
        f"alone {1000 * os.cpu_count() / ceiling:.1f} ms (cores / ceiling)"
    )
    print("command: .venv/bin/python bench/bench_api.py " + " ".join(sys.argv[1:]))
    return 0 if failed == 0 and non_2xx == 0 else 1


def measure_round(server, ab: list[str], requests: int, pool, photo: bytes, ceiling_seconds: float) -> dict:
    """One round: `requests` requests through ab (the CPU they cost the workers and ab), then the ceiling."""
    workers_before = children_cpu_seconds(server.process.pid)
    ab_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = subprocess.run(
        ab[:3] + [str(requests)] + ab[4:], capture_output=True, text=True, check=True
    ).stdout
    ab_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    non_2xx = re.search(r"Non-2xx responses:\s+(\d+)", result)
    return {
        "requests": requests,
        "seconds": float(re.search(r"Time taken for tests:\s+([\d.]+)", result).group(1)),
        "rps": float(re.search(r"Requests per second:\s+([\d.]+)", result).group(1)),
        "failed": int(re.search(r"Failed requests:\s+(\d+)", result).group(1)),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "percentiles": dict(re.findall(r"^\s+(\d+)%\s+(\d+)", result, re.MULTILINE)),
        "workers_cpu": children_cpu_seconds(server.process.pid) - workers_before,
        "ab_cpu": sum(getattr(ab_after, f) - getattr(ab_before, f) for f in ("ru_utime", "ru_stime")),
        "ceiling": decode_ceiling(pool, photo, ceiling_seconds),
    }


if __name__ == "__main__":
    sys.exit(main())
