"""The command-line client against a fake of the HTTP API: a real HTTP server in a thread, state in memory.

The fake follows the contract the client relies on (paths, status codes, payload shapes, token header), so
these tests exercise the real `requests` stack, multipart encoding and error mapping without Django.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import socket
import stat
import subprocess
import sys
import threading
import xml.etree.ElementTree as ET
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pytest

from personalize.client import main
from personalize.client.api import content_hash, normalize_server

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "tok-ana"
SLIDERS = [
    "exposure", "contrast", "highlights", "shadows", "whites", "blacks",
    "temperature", "tint", "vibrance", "saturation", "clarity", "dehaze",
]  # fmt: skip
CRS = "http://ns.adobe.com/camera-raw-settings/1.0/"


# --- the fake API ---------------------------------------------------------------------------------------


class FakeAPI:
    page_size = 2  # small, so that pagination is exercised

    def __init__(self):
        self.lock = threading.Lock()
        self.users = {"ana": "secret"}
        self.tokens = {TOKEN: "ana"}
        self.pairs: list[dict] = []
        self.jobs: list[dict] = []
        self.models: list[dict] = []
        self.active_model: int | None = None
        self.min_pairs = 3
        self.job_script: list[dict] = [
            {"status": "running", "progress": 0.4, "eta_seconds": 6, "step": 40, "val_delta_e": 4.2},
            {"status": "running", "progress": 0.9, "eta_seconds": 1, "step": 90, "val_delta_e": 2.5},
            {"status": "succeeded", "progress": 1.0, "eta_seconds": 0, "step": 100, "val_delta_e": 2.1},
        ]
        self.reject_uploads: set[str] = set()  # before file names answered with 400
        self.throttle_next_upload = False
        self.log: list[tuple[str, str]] = []  # (method, path)
        self.predict_forms: list[dict] = []
        self.render_forms: list[dict] = []
        self.max_previews = 64
        self.batches: list[tuple[dict, list[tuple[str, bytes]]]] = []  # (fields, [(name, preview)])
        self.reject_previews: set[str] = set()  # preview names containing these answer their own error
        self.refuse_batches = False
        self.imports: list[dict] = []
        self.import_script: list[dict] = [
            {"status": "running", "done": 1, "progress": 1 / 3, "eta_seconds": 4},
            {"status": "running", "done": 2, "progress": 2 / 3, "eta_seconds": 2},
            {
                "status": "succeeded",
                "done": 3,
                "progress": 1.0,
                "eta_seconds": None,
                "stored": [{"id": 1, "name": "a"}],
                "skipped": [
                    {"name": "b", "reason": "already uploaded as pair 7", "pair": 7},
                    {"name": "c", "reason": "before: not a readable image"},
                ],
            },
        ]

    # helpers
    def page(self, items: list[dict], query: dict, path: str) -> dict:
        page = int(query.get("page", ["1"])[0])
        start = (page - 1) * self.page_size
        chunk = items[start : start + self.page_size]
        more = start + self.page_size < len(items)
        return {
            "count": len(items),
            "next": f"{self.url}/api/v1/{path}?page={page + 1}" if more else None,
            "previous": None,
            "results": chunk,
        }

    def model_json(self, model: dict) -> dict:
        return {**model, "active": model["id"] == self.active_model}

    def add_model(self, metrics=None) -> dict:
        model = {
            "id": len(self.models) + 1,
            "version": len(self.models) + 1,
            "metrics": metrics or {"val_delta_e_personal": 2.1},
            "created_at": "2026-01-01T00:00:00Z",
            "size_bytes": 123456,
            "base_version": "base-1",
        }
        self.models.insert(0, model)
        return model

    def handle(self, method: str, path: str, query: dict, headers, body: bytes):
        """-> (status, payload, content_type, extra headers)"""
        self.log.append((method, path))
        route = path.removeprefix("/api/v1/")
        if not path.startswith("/api/v1/"):
            return 404, b"<html>not found</html>", "text/html", {}
        if route == "auth/token" and method == "POST":
            data = json.loads(body)
            if self.users.get(data.get("username")) == data.get("password"):
                token = next(t for t, u in self.tokens.items() if u == data["username"])
                return 200, {"token": token}, None, {}
            return 400, {"non_field_errors": ["Unable to log in with provided credentials."]}, None, {}
        auth = headers.get("Authorization", "")
        if not auth:
            return 401, {"detail": "Authentication credentials were not provided."}, None, {}
        if not auth.startswith("Token ") or auth[6:] not in self.tokens:
            return 401, {"detail": "Invalid token."}, None, {}

        if route == "pairs" and method == "GET":
            items = self.pairs
            if "content_hash" in query:
                items = [p for p in items if p["content_hash"] == query["content_hash"][0]]
            if "tag" in query:
                items = [p for p in items if query["tag"][0] in p["tags"]]
            return 200, self.page(items, query, "pairs"), None, {}
        if route == "pairs" and method == "POST":
            if self.throttle_next_upload:
                self.throttle_next_upload = False
                return 429, {"detail": "Request was throttled."}, None, {"Retry-After": "0"}
            form = parse_multipart(headers["Content-Type"], body)
            if form["before"][0] in self.reject_uploads:
                return 400, {"before": ["not a photo this server can read"]}, None, {}
            pair = {
                "id": len(self.pairs) + 1,
                "name": form.get("name", ("", b""))[1].decode(),
                "tags": [t for t in form.get("tags", ("", b""))[1].decode().split(",") if t],
                "content_hash": hashlib.sha256(form["before"][1] + form["after"][1]).hexdigest(),
                "before_size": [8, 8],
                "after_size": [8, 8],
                "mask_source": "uploaded" if "mask" in form else "none",
                "faces": 0,
                "created_at": "2026-01-01T00:00:00Z",
                "filenames": [form["before"][0], form["after"][0]],
            }
            self.pairs.insert(0, pair)
            return 201, pair, None, {}

        if route == "pairs/bulk" and method == "POST":
            form = parse_multipart(headers["Content-Type"], body)
            name, data = form["file"]
            row = {
                "id": len(self.imports) + 1,
                "status": "queued",
                "file_name": name,
                "tags": form["tags"][1].decode().split(",") if "tags" in form else [],
                "total": 3,
                "done": 0,
                "progress": 0.0,
                "eta_seconds": None,
                "stored": [],
                "skipped": [],
                "error": "",
                "script": [dict(step) for step in self.import_script],
                "request": data,
            }
            row["url"] = f"/api/v1/pairs/imports/{row['id']}"
            self.imports.insert(0, row)
            return 202, public_job(row), None, {"Location": row["url"]}
        if route == "pairs/imports" and method == "GET":
            return 200, self.page([public_job(row) for row in self.imports], query, "pairs/imports"), None, {}
        match = re.fullmatch(r"pairs/imports/(\d+)", route)
        if match and method == "GET":
            row = next((r for r in self.imports if r["id"] == int(match.group(1))), None)
            if row is None:
                return 404, {"detail": "No PairImport matches the given query."}, None, {}
            if row["script"]:
                row.update(row["script"].pop(0))
            return 200, public_job(row), None, {}
        if route == "jobs" and method == "POST":
            data = json.loads(body or b"{}")
            active = [j for j in self.jobs if j["status"] in ("queued", "running")]
            if active:
                return 409, {"detail": "a job is already active", "active_job": active[0]["id"]}, None, {}
            if len(self.pairs) < self.min_pairs:
                return (
                    400,
                    {
                        "detail": f"training needs at least {self.min_pairs} pairs",
                        "required": self.min_pairs,
                        "available": len(self.pairs),
                    },
                    None,
                    {},
                )
            job = {
                "id": len(self.jobs) + 1,
                "status": "queued",
                "progress": 0.0,
                "eta_seconds": None,
                "step": 0,
                "val_delta_e": None,
                "metrics": {},
                "error": "",
                "model": None,
                "created_at": f"2026-01-01T00:00:{len(self.jobs):02d}Z",
                "started_at": None,
                "finished_at": None,
                "seconds": data.get("seconds"),
                "face_weight": data.get("face_weight", 0.0),
                "seed": data.get("seed", 0),
                "tag": data.get("tag", ""),
                "request": data,
                "script": list(self.job_script),
            }
            self.jobs.insert(0, job)
            return 201, public_job(job), None, {}
        if route == "jobs" and method == "GET":
            return 200, self.page([public_job(j) for j in self.jobs], query, "jobs"), None, {}
        match = re.fullmatch(r"jobs/(\d+)(/cancel|/events)?", route)
        if match:
            job = next((j for j in self.jobs if j["id"] == int(match.group(1))), None)
            if job is None:
                return 404, {"detail": "No TrainingJob matches the given query."}, None, {}
            if match.group(2) == "/cancel" and method == "POST":
                if job["status"] in ("succeeded", "failed", "cancelled"):
                    return 409, {"detail": f"job {job['id']} already {job['status']}"}, None, {}
                job.update(status="cancelled", script=[])
                return 202, public_job(job), None, {}
            if match.group(2) == "/events":
                return (
                    200,
                    [{"at": "2026-01-01T00:00:00Z", "kind": "queued", "message": "queued", "data": {}}],
                    None,
                    {},
                )
            if job["script"]:
                job.update(job["script"].pop(0))
                if job["status"] == "succeeded" and job["model"] is None:
                    job["model"] = self.add_model(
                        {"val_delta_e_personal": 2.1, "val_delta_e_base": 3.4, "val_delta_e_no_edit": 6.0}
                    )["id"]
                    job["metrics"] = self.models[0]["metrics"]
            return 200, public_job(job), None, {}

        if route == "models" and method == "GET":
            return 200, self.page([self.model_json(m) for m in self.models], query, "models"), None, {}
        match = re.fullmatch(r"models/(\d+)/activate", route)
        if match and method == "POST":
            model = next((m for m in self.models if m["id"] == int(match.group(1))), None)
            if model is None:
                return 404, {"detail": "No PersonalModel matches the given query."}, None, {}
            self.active_model = model["id"]
            return 200, self.model_json(model), None, {}

        if route == "predict/batch":
            served = (
                {"id": self.active_model, "version": self.active_model, "kind": "personal"}
                if self.active_model
                else {"id": None, "version": "base-1", "kind": "base"}
            )
            if method == "GET":
                limits = {"max_previews": self.max_previews, "preview_size": 64, "max_preview_side": 256}
                return 200, {"model": served, **limits}, None, {}
            if self.refuse_batches:
                return 400, {"previews": ["the server is refusing batches"]}, None, {}
            fields, previews = parse_multipart_list(headers["Content-Type"], body)
            self.batches.append((fields, previews))
            results = []
            for name, data in previews:
                if not data.startswith(b"\x89PNG") or any(bad in name for bad in self.reject_previews):
                    results.append({"name": name, "error": "not a readable image"})
                    continue
                strength = float(fields.get("strength", "1"))
                values = {
                    n: round(((len(data) * (i + 1)) % 41 - 20) * strength) for i, n in enumerate(SLIDERS)
                }
                results.append({"name": name, "adjustments": values, "xmp": to_xmp(values)})
            return 200, {"model": served, "results": results}, None, {}

        if route in ("predict", "render") and method == "POST":
            form = parse_multipart(headers["Content-Type"], body)
            fields = {k: v[1].decode() for k, v in form.items() if k != "image"}
            image = form["image"][1]
            if not image.startswith(b"PHOTO"):
                return 400, {"image": ["cannot decode this image"]}, None, {}
            strength = float(fields.get("strength", "1"))
            base = {name: (len(image) * (i + 1)) % 41 - 20 for i, name in enumerate(SLIDERS)}
            adjustments = {name: round(value * strength) for name, value in base.items()}
            if route == "render":
                self.render_forms.append(fields)
                if "adjustments" in fields:
                    adjustments = {
                        k: round(v * strength) for k, v in json.loads(fields["adjustments"]).items()
                    }
                return 200, b"\xff\xd8JPEG" + json.dumps(adjustments).encode(), "image/jpeg", {}
            self.predict_forms.append(fields)
            if fields.get("format") == "xmp":
                return 200, to_xmp(adjustments).encode(), "application/rdf+xml; charset=utf-8", {}
            served = (
                {"id": self.active_model, "version": str(self.active_model), "kind": "personal"}
                if self.active_model
                else {"id": None, "version": "base-1", "kind": "base"}
            )
            return 200, {"adjustments": adjustments, "model": served}, None, {}
        return 404, {"detail": "Not found."}, None, {}


def public_job(job: dict) -> dict:
    return {k: v for k, v in job.items() if k not in ("script", "request")}


def to_xmp(adjustments: dict) -> str:
    return (
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
        f'<rdf:Description rdf:about="" xmlns:crs="{CRS}" crs:Version="15.0" '
        f'crs:Exposure2012="{adjustments["exposure"] / 50:+.2f}" '
        f'crs:IncrementalTemperature="{adjustments["temperature"]}"/>'
        "</rdf:RDF></x:xmpmeta>"
    )


def parse_multipart(content_type: str, body: bytes) -> dict[str, tuple[str, bytes]]:
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    form = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        form[name] = (part.get_filename() or "", part.get_payload(decode=True))
    return form


def parse_multipart_list(content_type: str, body: bytes) -> tuple[dict, list[tuple[str, bytes]]]:
    """(form fields, [(file name, bytes)] of the repeated `previews` field, in order)."""
    message = BytesParser(policy=policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
    )
    fields, previews = {}, []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if name == "previews":
            previews.append((part.get_filename() or "", part.get_payload(decode=True)))
        else:
            fields[name] = part.get_payload(decode=True).decode()
    return fields, previews


def make_handler(api: FakeAPI):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def dispatch(self, method: str):
            parts = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with api.lock:
                status, payload, content_type, extra = api.handle(
                    method, parts.path, parse_qs(parts.query), self.headers, body
                )
            data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type or "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            self.dispatch("GET")

        def do_POST(self):
            self.dispatch("POST")

        def do_DELETE(self):
            self.dispatch("DELETE")

    return Handler


@pytest.fixture
def fake():
    api = FakeAPI()
    server = ThreadingHTTPServer(("127.0.0.1", 0), make_handler(api))
    server.daemon_threads = True
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield api
    server.shutdown()
    server.server_close()


@pytest.fixture
def config_file(tmp_path, monkeypatch):
    path = tmp_path / "home" / ".config" / "personalize" / "config.json"
    monkeypatch.setenv("PERSONALIZE_CONFIG", str(path))
    monkeypatch.delenv("PERSONALIZE_TOKEN", raising=False)
    monkeypatch.delenv("PERSONALIZE_SERVER", raising=False)
    return path


@pytest.fixture
def env(fake, config_file, monkeypatch):
    """A fake server and a valid token in the environment."""
    monkeypatch.setenv("PERSONALIZE_SERVER", fake.url)
    monkeypatch.setenv("PERSONALIZE_TOKEN", TOKEN)
    return fake


@pytest.fixture
def run(capsys):
    def run(*argv: str) -> tuple[int, str, str]:
        code = main([str(arg) for arg in argv])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    return run


def photo(path: Path, content: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"PHOTO" + (content or path.name).encode() + bytes(range(256)))  # binary on purpose
    return path


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- packaging and configuration -------------------------------------------------------------------------


def test_importing_the_client_loads_no_django():
    code = (
        "import sys, personalize.client, personalize.client.cli, personalize.client.api; "
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'rest_framework', 'celery', "
        "'rlcore', 'torch')); assert not leaked, leaked; assert callable(personalize.client.main)"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_runs_as_a_module_with_help():
    result = subprocess.run(
        [sys.executable, "-m", "personalize.client", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0
    for command in (
        "login",
        "upload",
        "import",
        "import-status",
        "train",
        "status",
        "models",
        "activate",
        "predict",
    ):
        assert command in result.stdout


def test_normalize_server():
    assert normalize_server("localhost:8000/") == "http://localhost:8000"
    assert normalize_server("https://x.example/api/v1/") == "https://x.example"


def test_content_hash_is_sha256_of_before_then_after(tmp_path):
    before, after = photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg")
    assert content_hash(before, after) == hashlib.sha256(before.read_bytes() + after.read_bytes()).hexdigest()


def test_bad_arguments_exit_2(run, env):
    code, _, err = run("predict")
    assert code == 2 and "IMAGES" in err


# --- login and tokens ------------------------------------------------------------------------------------


def test_login_with_password_stdin_stores_the_token_for_the_owner_only(run, fake, config_file, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("secret\n"))
    code, _, err = run("--server", fake.url, "login", "--username", "ana", "--password-stdin")
    assert code == 0, err
    assert json.loads(config_file.read_text()) == {"server": fake.url, "token": TOKEN, "username": "ana"}
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(config_file.parent.stat().st_mode) == 0o700
    assert ("POST", "/api/v1/auth/token") in fake.log

    # Later commands find the server and the token in the config file.
    code, out, err = run("models")
    assert code == 0, err
    assert "no personal models yet" in out


def test_login_prompts_with_getpass(run, fake, config_file, monkeypatch):
    prompts = []
    monkeypatch.setattr("getpass.getpass", lambda prompt="": prompts.append(prompt) or "secret")
    monkeypatch.setattr("sys.stdin", io.StringIO("ana\n"))
    code, _, err = run("--server", fake.url, "login")
    assert code == 0, err
    assert prompts == ["Password: "] and "Username" in err
    assert json.loads(config_file.read_text())["token"] == TOKEN


def test_login_with_wrong_password_exits_4_and_writes_nothing(run, fake, config_file, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("wrong\n"))
    code, _, err = run("--server", fake.url, "login", "-u", "ana", "--password-stdin")
    assert code == 4
    assert err.strip() == "error: login failed: Unable to log in with provided credentials."
    assert not config_file.exists()


def test_login_ignores_a_stale_stored_token(run, fake, config_file, monkeypatch):
    config_file.parent.mkdir(parents=True)
    config_file.write_text(json.dumps({"server": fake.url, "token": "stale", "other": 1}))
    monkeypatch.setattr("sys.stdin", io.StringIO("secret\n"))
    code, _, err = run("login", "-u", "ana", "--password-stdin")
    assert code == 0, err
    assert json.loads(config_file.read_text()) == {
        "server": fake.url,
        "token": TOKEN,
        "username": "ana",
        "other": 1,
    }
    assert stat.S_IMODE(config_file.stat().st_mode) == 0o600


def test_logout_forgets_the_token(run, fake, config_file):
    config_file.parent.mkdir(parents=True)
    config_file.write_text(json.dumps({"server": fake.url, "token": TOKEN}))
    assert run("logout")[0] == 0
    assert json.loads(config_file.read_text()) == {"server": fake.url}
    code, _, err = run("models")
    assert code == 2 and "no API token" in err


def test_wrong_token_is_one_clear_line_and_exit_4(run, env, monkeypatch):
    monkeypatch.setenv("PERSONALIZE_TOKEN", "nope")
    code, out, err = run("status")
    assert code == 4
    assert err == "error: the server refused the token; run `personalize-client login`\n"
    assert out == ""


def test_no_token_exits_2(run, fake, config_file):
    code, _, err = run("--server", fake.url, "status")
    assert code == 2
    assert err.startswith("error: no API token") and err.count("\n") == 1


def test_unreachable_server_is_one_clear_line_and_exit_3(run, config_file):
    url = f"http://127.0.0.1:{closed_port()}"
    code, _, err = run("--server", url, "--token", TOKEN, "models")
    assert code == 3
    assert err == f"error: cannot reach the server at {url} (Connection refused)\n"


def test_a_url_that_is_not_the_api_is_a_clear_error(run, env, monkeypatch):
    monkeypatch.setenv("PERSONALIZE_SERVER", env.url + "/elsewhere")
    code, _, err = run("models")
    assert code == 1
    assert err.startswith("error: the server answered 404") and err.count("\n") == 1


def test_settings_precedence_flag_then_env_then_config(run, fake, config_file, monkeypatch):
    config_file.parent.mkdir(parents=True)
    config_file.write_text(
        json.dumps({"server": f"http://127.0.0.1:{closed_port()}", "token": "from-config"})
    )
    # env beats config (the config's server is closed; the env's token is good)
    monkeypatch.setenv("PERSONALIZE_SERVER", fake.url)
    monkeypatch.setenv("PERSONALIZE_TOKEN", TOKEN)
    assert run("models")[0] == 0
    # a flag beats env, before or after the command
    assert run("models", "--token", "bad")[0] == 4
    assert run("--token", "bad", "models")[0] == 4
    monkeypatch.delenv("PERSONALIZE_TOKEN")
    assert run("models")[0] == 4  # the config's token
    assert run("models", "--token", TOKEN)[0] == 0


def test_a_broken_config_file_is_a_usage_error(run, fake, config_file):
    config_file.parent.mkdir(parents=True)
    config_file.write_text("{not json")
    code, _, err = run("--server", fake.url, "models")
    assert code == 2 and "not valid JSON" in err


# --- upload -----------------------------------------------------------------------------------------------


@pytest.fixture
def folders(tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    for name in ("a.JPG", "b.png", "c.tif", "only_before.jpg"):
        photo(before / name)
    for name in ("A.jpg", "B.JPEG", "c.TIFF", "only_after.webp"):
        photo(after / name, content="edited " + name)
    (before / "notes.txt").write_text("not a photo")
    (before / ".DS_Store").write_bytes(b"junk")
    return before, after


def test_upload_matches_by_stem_reports_unmatched_and_sends_tags(run, env, folders):
    before, after = folders
    code, out, err = run("upload", before, after, "--tag", "wedding", "--tag", "2024,wedding")
    assert code == 0, err
    assert out.strip() == "uploaded 3, skipped 0 already uploaded"
    assert "only_before.jpg" in err and "only_after.webp" in err
    assert "notes.txt" in err and ".DS_Store" not in err
    pairs = sorted(env.pairs, key=lambda p: p["name"])
    assert [p["name"] for p in pairs] == ["a", "b", "c"]
    assert [p["filenames"] for p in pairs] == [["a.JPG", "A.jpg"], ["b.png", "B.JPEG"], ["c.tif", "c.TIFF"]]
    assert all(p["tags"] == ["2024", "wedding"] for p in pairs)
    for pair in pairs:  # the server's hash of the raw bytes equals the client's
        b, a = (before / pair["filenames"][0]), (after / pair["filenames"][1])
        assert pair["content_hash"] == content_hash(b, a)


def test_upload_is_resumable(run, env, folders):
    before, after = folders
    assert run("upload", before, after, "-j", "1")[0] == 0
    code, out, _ = run("upload", before, after)
    assert code == 0
    assert out.strip() == "uploaded 0, skipped 3 already uploaded"
    assert len(env.pairs) == 3
    # One more matched pair: only it is uploaded.
    photo(before / "d.jpeg")
    photo(after / "D.webp", content="edited d")
    code, out, _ = run("upload", before, after)
    assert out.strip() == "uploaded 1, skipped 3 already uploaded"
    assert len(env.pairs) == 4


def test_upload_uploads_identical_pairs_once(run, env, tmp_path):
    before, after = tmp_path / "before", tmp_path / "after"
    photo(before / "x.jpg", "same")
    photo(before / "x_copy.jpg", "same")
    photo(after / "x.jpg", "same-edited")
    photo(after / "x_copy.jpg", "same-edited")
    code, out, _ = run("upload", before, after)
    assert code == 0 and out.strip() == "uploaded 1, skipped 1 already uploaded"


def test_upload_with_masks(run, env, folders, tmp_path):
    before, after = folders
    photo(tmp_path / "masks" / "A.png")
    assert run("upload", before, after, "--masks", tmp_path / "masks")[0] == 0
    assert {p["name"]: p["mask_source"] for p in env.pairs} == {"a": "uploaded", "b": "none", "c": "none"}


def test_upload_failures_are_reported_and_exit_1(run, env, folders):
    before, after = folders
    env.reject_uploads = {"b.png"}
    code, out, err = run("upload", before, after)
    assert code == 1
    assert out.strip() == "uploaded 2, skipped 0 already uploaded, failed 1"
    assert "b.png" in err and "not a photo this server can read" in err


def test_upload_retries_a_short_throttle(run, env, folders):
    before, after = folders
    env.throttle_next_upload = True
    code, out, _ = run("upload", before, after, "-j", "1")
    assert code == 0 and out.strip() == "uploaded 3, skipped 0 already uploaded"


def test_upload_missing_folder_exits_2(run, env, folders, tmp_path):
    before, _ = folders
    code, _, err = run("upload", before, tmp_path / "missing")
    assert code == 2
    assert err == f"error: folder not found: {tmp_path / 'missing'}\n"
    assert env.log == []


def test_upload_dry_run_and_no_pairs(run, env, folders, tmp_path):
    before, after = folders
    code, out, _ = run("upload", before, after, "--dry-run")
    assert code == 0 and "a.JPG  ->  A.jpg" in out and env.pairs == []
    (tmp_path / "empty").mkdir()
    code, _, err = run("upload", before, tmp_path / "empty")
    assert code == 2 and "no before/after pairs" in err


def test_upload_wrong_token_stops_with_exit_4(run, env, folders, monkeypatch):
    monkeypatch.setenv("PERSONALIZE_TOKEN", "nope")
    code, _, err = run("upload", *folders)
    assert code == 4 and err.strip().endswith("run `personalize-client login`")


# --- training ---------------------------------------------------------------------------------------------


def seed_pairs(api: FakeAPI, n: int = 3):
    for i in range(n):
        api.pairs.append({"id": i + 1, "content_hash": f"{i:064x}", "tags": [], "name": str(i)})


def test_train_wait_follows_progress_and_succeeds(run, env):
    seed_pairs(env)
    code, out, err = run("train", "--seconds", "8", "--seed", "3", "--wait", "--poll", "0")
    assert code == 0, err
    assert env.jobs[0]["request"] == {"seconds": 8, "seed": 3}
    assert out.strip() == "job 1 succeeded: model 1, validation ΔE00 2.10 (base 3.40, no edit 6.00)"
    # Not a terminal: one line per status change / 10% of progress, with ETA and validation ΔE00.
    assert "job 1: running, 40%, ETA 0:06, val ΔE00 4.20" in err
    assert "activate 1" in err  # the fake does not activate new models


def test_train_wait_logs_every_10_percent_the_server_reports_in_order(run, env):
    seed_pairs(env)
    reported = [0.0, 0.04, 0.12, 0.25, 0.29, 0.37, 0.51, 0.64, 0.78, 0.93]
    env.job_script = [{"status": "running", "progress": p} for p in reported] + [
        {"status": "succeeded", "progress": 1.0}
    ]
    code, _, err = run("train", "--wait", "--poll", "0")
    assert code == 0, err
    logged = [int(m) for m in re.findall(r"job 1: running, (\d+)%", err)]
    # A line per 10 % step: 0.04 and 0.29 share a step with the line before them.
    assert logged == [0, 12, 25, 37, 51, 64, 78, 93]


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_train_wait_bar_on_a_terminal(run, env, monkeypatch):
    seed_pairs(env)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    code, _, _ = run("train", "--wait", "--poll", "0")
    assert code == 0
    screen = terminal.getvalue()
    assert "job 1:  40%|" in screen
    # The status right after the bar, without the ", " tqdm puts before a string postfix.
    assert "| running, step 40, ETA 0:06, val ΔE00 4.20" in screen
    assert "| ," not in screen and "|, " not in screen


@pytest.mark.parametrize(
    ("final", "message"),
    [
        ({"status": "failed", "error": "worker lost"}, "error: job 1 failed: worker lost"),
        ({"status": "cancelled"}, "error: job 1 was cancelled"),
    ],
)
def test_train_wait_fails_with_exit_1(run, env, final, message):
    seed_pairs(env)
    env.job_script = [{"status": "running", "progress": 0.5}, final]
    code, _, err = run("train", "--wait", "--poll", "0")
    assert code == 1
    assert message in err


def test_train_without_wait_prints_the_job_id(run, env):
    seed_pairs(env)
    code, out, err = run("train", "--tag", "wedding")
    assert code == 0 and out.strip() == "1"
    assert env.jobs[0]["request"] == {"tag": "wedding"}
    assert "status 1 --wait" in err


def test_train_with_too_few_pairs(run, env):
    seed_pairs(env, 1)
    code, _, err = run("train")
    assert code == 1
    assert "at least 3 pairs; you have 1" in err


def test_train_while_a_job_is_active(run, env):
    seed_pairs(env)
    assert run("train")[0] == 0
    code, _, err = run("train")
    assert code == 1 and "job 1 is still in progress" in err


def test_status_latest_by_id_and_wait(run, env):
    code, out, _ = run("status")
    assert code == 0 and "no training jobs yet" in out
    seed_pairs(env)
    run("train")
    code, out, _ = run("status")
    assert code == 0 and out.startswith("job 1: queued")
    code, out, _ = run("status", "1", "--json", "--events")
    assert json.loads(out[: out.index("\n}") + 2])["id"] == 1 and "queued" in out
    code, out, _ = run("status", "1", "--wait", "--poll", "0")
    assert code == 0 and "succeeded" in out
    code, out, _ = run("status", "99")
    assert code == 1


def test_cancel(run, env):
    seed_pairs(env)
    run("train")
    code, out, _ = run("cancel", "1")
    assert code == 0 and out.strip() == "job 1: cancelled"
    code, _, err = run("cancel", "1")
    assert code == 1 and "already cancelled" in err


# --- models -----------------------------------------------------------------------------------------------


def test_models_lists_every_page_and_activate(run, env):
    for _ in range(3):
        env.add_model()
    code, out, err = run("models")
    assert code == 0
    lines = out.strip().splitlines()
    assert lines[0].split()[:3] == ["ID", "VERSION", "ACTIVE"] and len(lines) == 4  # 3 models over 2 pages
    assert "no model is active" in err
    code, out, _ = run("activate", "2")
    assert code == 0 and out.strip() == "model 2 (version 2) is now active"
    code, out, _ = run("models", "--json")
    assert [m["id"] for m in json.loads(out) if m["active"]] == [2]
    code, _, err = run("activate", "42")
    assert code == 1 and "no model 42" in err


# --- predict ----------------------------------------------------------------------------------------------


def test_predict_prints_sliders_writes_xmp_and_renders(run, env, tmp_path):
    shoot = tmp_path / "shoot"
    first, second = photo(shoot / "IMG_0001.JPG"), photo(shoot / "IMG_0002.png")
    out_dir = tmp_path / "renders"
    code, out, err = run("predict", first, second, "--strength", "0.5", "--xmp", "--render", out_dir)
    assert code == 0, err
    assert "IMG_0001.JPG  (base model vbase-1)" in out and "IMG_0002.png" in out
    assert re.search(r"^  exposure\s+[+-]\d+$", out, re.MULTILINE)
    assert all(form["strength"] == "0.5" for form in env.predict_forms)
    for image in (first, second):
        sidecar = image.with_suffix(".xmp")
        root = ET.parse(sidecar).getroot()
        attributes = {k for element in root.iter() for k in element.attrib}
        assert {f"{{{CRS}}}Exposure2012", f"{{{CRS}}}IncrementalTemperature"} <= attributes
        # readable as any file the editor writes (the umask's), not its owner's only: a shared drive's
        umask = os.umask(0o022)
        os.umask(umask)
        assert stat.S_IMODE(sidecar.stat().st_mode) == 0o666 & ~umask
    # Renders use the printed (already scaled) sliders at strength 1.
    assert sorted(p.name for p in out_dir.iterdir()) == ["IMG_0001.jpg", "IMG_0002.jpg"]
    assert all(form["strength"] == "1.0" and "adjustments" in form for form in env.render_forms)
    code, out, _ = run("predict", first, "--strength", "0.5", "--json")
    record = json.loads(out)
    rendered = json.loads((out_dir / "IMG_0001.jpg").read_bytes()[6:])
    assert rendered == record["adjustments"]


def test_predict_with_render_writes_the_sidecars_into_out(run, env, tmp_path):
    image = photo(tmp_path / "shoot" / "IMG_0001.jpg")
    sidecars, renders = tmp_path / "sidecars", tmp_path / "renders"
    code, _, err = run("predict", image, "--xmp", "--out", sidecars, "--render", renders)
    assert code == 0, err
    assert "Exposure2012" in (sidecars / "IMG_0001.xmp").read_text()
    assert not image.with_suffix(".xmp").exists()
    assert [p.name for p in renders.iterdir()] == ["IMG_0001.jpg"]


def test_predict_a_folder_and_name_clashes_in_renders(run, env, tmp_path):
    photo(tmp_path / "shoot" / "a.jpg")
    photo(tmp_path / "shoot" / "a.png")
    (tmp_path / "shoot" / "a.xmp").write_text("not a photo")
    code, out, _ = run("predict", tmp_path / "shoot", "--render", tmp_path / "out", "--json")
    assert code == 0
    assert len(out.strip().splitlines()) == 2
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "a_png.jpg"]


def test_predict_keeps_existing_sidecars_unless_overwrite(run, env, tmp_path):
    image = real_jpeg(tmp_path / "IMG_1.jpg")
    sidecar = tmp_path / "IMG_1.xmp"
    sidecar.write_text("the editor's own settings")
    code, out, err = run("predict", image, "--xmp", "-j", "1")
    assert code == 0 and "skipped 1" in out and "--overwrite" in err
    assert sidecar.read_text() == "the editor's own settings" and env.batches == []
    assert run("predict", image, "--xmp", "--overwrite", "-j", "1")[0] == 0
    assert "Exposure2012" in sidecar.read_text()


# --- predict a shoot: previews in batches, sidecars, resumable ----------------------------------------------


def real_jpeg(path: Path, index: int = 0, orientation: int = 1) -> Path:
    """A real 600x400 JPEG (the fake server's batch endpoint receives what the client really decodes)."""
    from PIL import Image

    rng = np.random.default_rng(index)
    pixels = np.clip(rng.normal(120 + 10 * index, 40, (400, 600, 3)), 0, 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x0112] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="JPEG", quality=90, exif=exif.tobytes())
    return path


STAMP = "{urn:personalize:sidecar:1}"


def sidecar_stamp(path: Path) -> dict:
    root = ET.parse(path).getroot()
    description = next(root.iter("{http://www.w3.org/1999/02/22-rdf-syntax-ns#}Description"))
    assert f"{{{CRS}}}Exposure2012" in description.attrib
    return {k.removeprefix(STAMP): v for k, v in description.attrib.items() if k.startswith(STAMP)}


def test_predict_shoot_writes_sidecars_from_batches_of_previews(run, env, tmp_path):
    shoot = tmp_path / "shoot"
    for i in range(5):
        real_jpeg(shoot / f"IMG_{i}.jpg", i, orientation=6 if i == 0 else 1)
    jpeg_bytes = (shoot / "IMG_1.jpg").read_bytes()
    noise = bytes(range(254)) * 200
    (shoot / "IMG_7.CR2").write_bytes(b"II*\x00" + noise + jpeg_bytes + noise)  # RAW with a preview
    (shoot / "IMG_7.JPG").write_bytes(jpeg_bytes)  # its RAW+JPEG twin
    (shoot / "IMG_8.NEF").write_bytes(b"MM\x00*" + noise)  # RAW without one
    (shoot / "IMG_9.jpg").write_bytes(jpeg_bytes[:3000])  # cut short
    (shoot / "notes.txt").write_text("not a photo")
    env.max_previews = 2

    code, out, err = run("predict", shoot, "--xmp", "-j", "2", "--strength", "0.5")
    assert code == 1, err  # IMG_9 failed
    assert "done 6, skipped 2 (0 up to date), failed 1" in out
    assert f"failed: {shoot / 'IMG_9.jpg'}: the image data is damaged or incomplete" in err
    assert f"skipped: {shoot / 'IMG_8.NEF'}: a RAW file without an embedded JPEG preview" in err
    assert f"skipped: {shoot / 'IMG_7.JPG'}: shares its sidecar IMG_7.xmp with IMG_7.CR2" in err
    # In batches of at most max_previews previews, each a 64x64 PNG of a few KB, never the file.
    previews = [data for _, batch in env.batches for _, data in batch]
    assert len(previews) == 6 and all(len(batch) <= 2 for _, batch in env.batches)
    assert all(data.startswith(b"\x89PNG") and len(data) < 20_000 for data in previews)
    assert all(fields["strength"] == "0.5" and fields["format"] == "xmp" for fields, _ in env.batches)
    assert "per photo" in out and ("predict", "POST") not in [(p, m) for m, p in env.log]
    written = sorted(p.name for p in shoot.glob("*.xmp"))
    assert written == ["IMG_0.xmp", "IMG_1.xmp", "IMG_2.xmp", "IMG_3.xmp", "IMG_4.xmp", "IMG_7.xmp"]
    stamp = sidecar_stamp(shoot / "IMG_2.xmp")
    assert stamp["model"] == "base - vbase-1" and stamp["strength"] == "0.5"

    # Resumable: a second run sends nothing for the sidecars that are up to date.
    env.batches.clear()
    code, out, _ = run("predict", shoot, "--xmp", "-j", "2", "--strength", "0.5")
    assert "done 0, skipped 8 (6 up to date), failed 1" in out and env.batches == []
    # A changed photo, a new strength or a new model makes its sidecars stale: they are redone.
    real_jpeg(shoot / "IMG_3.jpg", 33)
    code, out, _ = run("predict", shoot, "--xmp", "-j", "1", "--strength", "0.5")
    assert "done 1," in out and [name for _, b in env.batches for name, _ in b] == ["0-IMG_3.jpg"]
    env.add_model()
    run("activate", "1")
    code, out, _ = run("predict", shoot, "--xmp", "-j", "1", "--strength", "0.5")
    assert "done 6," in out and sidecar_stamp(shoot / "IMG_0.xmp")["model"] == "personal 1 v1"


def test_predict_shoot_into_out_with_server_errors_per_photo_and_per_batch(run, env, tmp_path):
    shoot, out_dir = tmp_path / "shoot", tmp_path / "sidecars"
    for i in range(3):
        real_jpeg(shoot / f"IMG_{i}.jpg", i)
    env.reject_previews = {"IMG_1"}
    code, out, err = run("predict", shoot, "--xmp", "--out", out_dir, "-j", "1", "--json")
    assert code == 1 and "done 2, skipped 0 (0 up to date), failed 1" in out
    assert f"failed: {shoot / 'IMG_1.jpg'}: not a readable image" in err
    assert sorted(p.name for p in out_dir.iterdir()) == ["IMG_0.xmp", "IMG_2.xmp"]
    assert not list(shoot.glob("*.xmp"))
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    assert sorted(Path(r["xmp"]).name for r in records) == ["IMG_0.xmp", "IMG_2.xmp"]
    env.refuse_batches = True
    env.reject_previews = set()
    code, out, err = run("predict", shoot, "--xmp", "--out", out_dir, "-j", "1")
    assert code == 1 and "failed 1" in out and "the server is refusing batches" in err
    assert not (out_dir / "IMG_1.xmp").exists()


def test_predict_reports_bad_photos_and_goes_on(run, env, tmp_path):
    good = photo(tmp_path / "good.jpg")
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"garbage")
    code, out, err = run("predict", bad, good)
    assert code == 1
    assert "good.jpg" in out
    assert f"error: {bad}: image: cannot decode this image" in err and "1 of 2 photo(s) failed" in err


def test_predict_missing_file_and_bad_strength_exit_2(run, env, tmp_path):
    code, _, err = run("predict", tmp_path / "nope.jpg")
    assert code == 2 and err == f"error: file not found: {tmp_path / 'nope.jpg'}\n"
    code, _, err = run("predict", photo(tmp_path / "a.jpg"), "--strength", "3")
    assert code == 2 and "--strength" in err
    assert env.log == []


def test_predict_uses_the_active_personal_model(run, env, tmp_path):
    env.add_model()
    run("activate", "1")
    code, out, _ = run("predict", photo(tmp_path / "a.jpg"), "--json")
    assert json.loads(out)["model"] == {"id": 1, "version": "1", "kind": "personal"}


# --- import (a zip the server imports in the background) ---------------------------------------------------


def test_import_sends_the_zip_and_follows_the_import_to_its_end(run, env, tmp_path):
    archive = tmp_path / "shoot.zip"
    archive.write_bytes(b"PK" + bytes(range(256)) * 400)  # the fake does not unpack it
    code, out, err = run("import", archive, "--tag", "wedding,beach", "--poll", "0")
    assert code == 1, err  # one pair was refused
    assert env.imports[0]["request"] == archive.read_bytes() and env.imports[0]["file_name"] == "shoot.zip"
    assert env.imports[0]["tags"] == ["beach", "wedding"]
    # Not a terminal: a line per status change and per 10 % of the pairs, with the server's ETA.
    assert "import 1: queued, 0 of 3 pairs" in err and "import 1: running, 1 of 3 pairs, ETA 0:04" in err
    assert "skipped: c: before: not a readable image" in err and "skipped: b" not in err
    assert out.strip() == "imported 1, skipped 1 already uploaded, refused 1"
    assert [path for method, path in env.log if method == "GET"] == ["/api/v1/pairs/imports/1"] * 3


def test_import_bar_on_a_terminal(run, env, tmp_path, monkeypatch):
    archive = tmp_path / "shoot.zip"
    archive.write_bytes(b"PK" * 1000)
    terminal = Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    run("import", archive, "--poll", "0")
    screen = terminal.getvalue()
    assert "sending: 100%" in screen and "import 1: 1/3 pairs|" in screen and "| running, ETA 0:04" in screen


def test_import_without_waiting_and_import_status(run, env, tmp_path):
    code, out, _ = run("import-status")
    assert code == 0 and "no imports yet" in out
    archive = tmp_path / "shoot.zip"
    archive.write_bytes(b"PK")
    code, out, err = run("import", archive, "--no-wait")
    assert code == 0 and out.strip() == "1" and "import-status 1 --wait" in err
    code, out, _ = run("import-status", "1")
    assert code == 0 and out.strip() == "import 1: running, 1 of 3 pairs, ETA 0:04"
    code, out, _ = run("import-status", "--wait", "--poll", "0", "--json")
    assert code == 0 and json.loads(out)["status"] == "succeeded"
    code, _, err = run("import-status", "9")
    assert code == 1 and "No PairImport" in err


def test_import_of_a_missing_file_exits_2(run, env, tmp_path):
    code, _, err = run("import", tmp_path / "nope.zip")
    assert code == 2 and "file not found" in err and env.log == []


def test_train_seconds_0_asks_for_the_instant_model_and_negative_is_a_usage_error(run, env):
    """The API takes `seconds: 0` (the instant model alone); the client passes it on, and refuses -1 itself."""
    seed_pairs(env)
    code, _, err = run("train", "--seconds", "0", "--wait", "--poll", "0")
    assert code == 0, err
    assert env.jobs[0]["request"] == {"seconds": 0}
    code, _, err = run("train", "--seconds", "-1")
    assert code == 2 and "must be at least 0" in err
    assert len(env.jobs) == 1
