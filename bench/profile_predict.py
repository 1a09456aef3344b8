"""Where a full-file prediction's CPU goes outside the decode: POST /api/v1/predict in process, by phase.

    .venv/bin/python bench/profile_predict.py [--requests 150] [--database-url postgres://...]

The same 12-megapixel JPEG and multipart body as bench_api.py, sent through Django's WSGI handler (the
request signals, connection handling and middleware of a gunicorn worker, without the socket or the load
generator) on a scratch database with the settings bench_api's server runs with (DEBUG off, no throttle on
predictions). CPU time (time.process_time, user + system) of each phase is summed over the requests by
wrapping the functions that do it; phases nest where noted. The decode alone, as bench_api's ceiling
decodes, is timed in the same process between requests. CPU time stays meaningful when other work shares
the machine (wall clock does not), but caches are shared too: compare runs made side by side.
"""

from __future__ import annotations

import argparse
import collections
import importlib
import io
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.scratch_server import scratch_settings  # noqa: E402

# (module, attribute path, label): each wrapped to sum its CPU time.
PHASES = [
    ("rest_framework.authentication", "TokenAuthentication.authenticate", "token authentication (query)"),
    ("django.db.backends.base.base", "BaseDatabaseWrapper.connect", "  of which connecting"),
    ("rest_framework.views", "APIView.check_throttles", "throttle (cache)"),
    ("rest_framework.request", "Request._load_data_and_files", "multipart parsing (reading the body)"),
    ("personalize.views", "read_upload", "reading the upload, header checks"),
    ("personalize.images", "UploadedPhoto.decode", "decode (1/8-scale JPEG, to 256 px)"),
    ("personalize.inference", "model_for", "model lookup (query)"),
    ("rlcore.modelfile", "PersonalModel.predict", "model: thumbnail, features, network"),
    ("personalize.views", "log_prediction", "prediction log (insert, commit)"),
    ("django.db.backends.base.base", "BaseDatabaseWrapper.close", "closing the connection"),
    ("django.template.response", "SimpleTemplateResponse.render", "rendering the response"),
]


def scratch_environment(database_url: str) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="profile-predict-"))
    os.environ.update(
        {"DJANGO_SETTINGS_MODULE": "personalize.settings", **scratch_settings(scratch, database_url)}
    )


def wrap_phases(totals: dict) -> None:
    for module_name, path, label in PHASES:
        owner = importlib.import_module(module_name)
        *parents, name = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        original = getattr(owner, name)

        def timed(*args, _original=original, _label=label, **kwargs):
            started = time.process_time()
            try:
                return _original(*args, **kwargs)
            finally:
                totals[_label] += time.process_time() - started

        setattr(owner, name, timed)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=150)
    parser.add_argument("--database-url", default="", help="default: a scratch SQLite file")
    args = parser.parse_args()
    scratch_environment(args.database_url)

    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    from django.db import connections

    from bench.bench_api import multipart_body, twelve_megapixel_jpeg
    from personalize.accounts import create_or_get_editor
    from personalize.images import UploadedPhoto, inspect_bytes
    from personalize.inference import PREDICTION_SIDE
    from personalize.wsgi import application  # what gunicorn loads (allocator settings included)

    _, token = create_or_get_editor(f"profile{os.getpid()}")
    connections.close_all()
    # Made in another process: its 144 MB of temporary arrays would raise glibc's adaptive mmap threshold in
    # this one and hide the page faults a web process pays (rlcore/malloc.py).
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        photo = pool.apply(twelve_megapixel_jpeg)
    boundary = "benchboundary7d1f"
    body = multipart_body("image", "photo.jpg", photo, boundary)

    def predict() -> None:
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": "/api/v1/predict",
            "SCRIPT_NAME": "",
            "QUERY_STRING": "",
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "8000",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "HTTP_HOST": "127.0.0.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": f"multipart/form-data; boundary={boundary}",
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_AUTHORIZATION": f"Token {token}",
            "wsgi.input": io.BytesIO(body),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": False,
            "wsgi.multiprocess": True,
            "wsgi.run_once": False,
            "wsgi.version": (1, 0),
        }
        status = []
        response = application(environ, lambda s, headers, exc_info=None: status.append(s))
        b"".join(response)
        response.close()
        if not status[0].startswith("200"):
            raise SystemExit(f"POST /api/v1/predict answered {status[0]}")

    uploaded, decode = inspect_bytes("image", photo), UploadedPhoto.decode  # the latter not wrapped below
    for _ in range(5):  # warm: model load, first decode, connection
        predict()
        decode(uploaded, max_side=PREDICTION_SIDE)

    totals: dict = collections.defaultdict(float)
    wrap_phases(totals)
    requests, decodes = [], []
    usage = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(args.requests):
        started = time.process_time()
        predict()
        requests.append(time.process_time() - started)
        started = time.process_time()
        decode(uploaded, max_side=PREDICTION_SIDE)
        decodes.append(time.process_time() - started)
    after = resource.getrusage(resource.RUSAGE_SELF)

    n = args.requests
    request_ms = 1000 * sum(requests) / n
    print(
        f"photo: 4000x3000 JPEG, {len(photo) / 1e6:.1f} MB; {n} requests in process, {os.cpu_count()} cores"
    )
    print(f"a prediction: {request_ms:.2f} ms CPU (median {1000 * statistics.median(requests):.2f})")
    print(f"the decode alone, as bench_api's ceiling decodes: {1000 * sum(decodes) / n:.2f} ms")
    print(f"page faults per request and decode: {(after.ru_minflt - usage.ru_minflt) / n:.0f}")
    print("phases (ms of CPU per request):")
    for _, _, label in PHASES:
        print(f"  {label:42s} {1000 * totals[label] / n:6.2f}")
    nested = {"  of which connecting"}
    listed = sum(v for k, v in totals.items() if k not in nested)
    print(f"  {'the rest (Django, DRF, middleware, view)':42s} {request_ms - 1000 * listed / n:6.2f}")
    print("command: .venv/bin/python bench/profile_predict.py " + " ".join(sys.argv[1:]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
