"""A thin wrapper over the public HTTP API, /api/v1/. Only `requests`: no Django, so it runs anywhere.

Every call returns parsed JSON (or bytes/text for renders and XMP sidecars) and raises one of:

* `Unreachable`: the server could not be reached (connection refused, DNS failure, timeout);
* `AuthError`: the server answered 401 (wrong or revoked token);
* `ApiError`: any other answer of 400 or more, with the status, the server's `detail` and the full body.
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import requests

from personalize.client.conventions import file_chunks, pair_hash

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = 60.0  # seconds; uploads and renders of big photos can take a while
USER_AGENT = "personalize-client/0.1"
# Throttled (429) requests are retried when the server asks for a short wait; longer waits are errors.
MAX_THROTTLE_RETRIES = 3
MAX_THROTTLE_WAIT = 30.0


class ClientError(Exception):
    """Base class of everything this module raises."""


class Unreachable(ClientError):
    def __init__(self, server: str, reason: str):
        super().__init__(f"cannot reach the server at {server} ({reason})")
        self.server = server
        self.reason = reason


class ApiError(ClientError):
    def __init__(self, status: int, detail: str, payload: Any = None, path: str = ""):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.payload = payload
        self.path = path


class AuthError(ApiError):
    pass


def normalize_server(url: str) -> str:
    """'localhost:8000/' -> 'http://localhost:8000'; a pasted '.../api/v1' suffix is dropped too."""
    url = url.strip()
    if "://" not in url:
        url = "http://" + url
    url = url.rstrip("/")
    if url.endswith(API_PREFIX):
        url = url[: -len(API_PREFIX)]
    return url


def content_hash(before: Path, after: Path) -> str:
    """The pair's content hash (personalize.client.conventions.pair_hash), as the server stores it."""
    return pair_hash(file_chunks(before, after))


def retry_after(response: requests.Response) -> float | None:
    """Seconds a 429 answer asks us to wait (Retry-After in seconds), None when it does not say."""
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return None


def connection_reason(exc: Exception) -> str:
    """A short reason from requests' long connection errors: 'Connection refused', 'timed out', ..."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\"()]+)", text)
    if match:
        return match.group(1).strip().rstrip(".")
    for hint in (
        "Name or service not known",
        "nodename nor servname",
        "Connection refused",
        "Connection reset",
    ):
        if hint in text:
            return hint
    return type(exc).__name__


def error_detail(response: requests.Response) -> tuple[str, Any]:
    """The human part of an error answer: `detail`, else `field: reason; ...`, else the status line."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        if isinstance(payload.get("detail"), str):
            return payload["detail"], payload
        parts = []
        for field, reasons in payload.items():
            if isinstance(reasons, list):
                reasons = "; ".join(str(reason) for reason in reasons)
            parts.append(str(reasons) if field in ("non_field_errors", "detail") else f"{field}: {reasons}")
        if parts:
            return "; ".join(parts), payload
    if isinstance(payload, list) and payload:
        return "; ".join(str(item) for item in payload), payload
    return f"the server answered {response.status_code} {response.reason or ''}".strip(), payload


class StreamedUpload:
    """A multipart/form-data body with one file, read from disk while it is sent, reporting its progress.

    requests reads it like a file and takes its length from len(), so the request has a Content-Length
    (the server refuses a body over its limit before reading it) and the file is never in memory whole.
    """

    def __init__(self, fields: dict[str, str], field: str, path: Path, content_type: str, on_progress=None):
        boundary = uuid.uuid4().hex
        filename = path.name.replace('"', "%22")
        parts = [
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            for name, value in fields.items()
        ]
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field}"; filename="{filename}"\r\n'
            f"Content-Type: {content_type}\r\n\r\n"
        )
        self.head = "".join(parts).encode()
        self.tail = f"\r\n--{boundary}--\r\n".encode()
        self.content_type = f"multipart/form-data; boundary={boundary}"
        self.file_size = path.stat().st_size
        self.handle = open(path, "rb")  # noqa: SIM115 (closed by __exit__)
        self.on_progress = on_progress
        self.position = 0

    def __len__(self) -> int:
        return len(self.head) + self.file_size + len(self.tail)

    def __enter__(self) -> StreamedUpload:
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()

    def seek(self, offset: int) -> None:
        """Only back to the start, for a request sent again (a throttled one)."""
        self.position = offset
        self.handle.seek(max(0, offset - len(self.head)))

    def read(self, size: int = -1) -> bytes:
        size = len(self) - self.position if size is None or size < 0 else size
        out = b""
        if self.position < len(self.head):
            out = self.head[self.position : self.position + size]
        if len(out) < size and self.position + len(out) < len(self.head) + self.file_size:
            out += self.handle.read(size - len(out))
        start_of_tail = len(self.head) + self.file_size
        if len(out) < size and self.position + len(out) >= start_of_tail:
            offset = self.position + len(out) - start_of_tail
            out += self.tail[offset : offset + size - len(out)]
        self.position += len(out)
        if self.on_progress is not None and out:
            self.on_progress(self.position)
        return out


class Client:
    """One editor's connection to one server. Safe to share between threads (one session per thread)."""

    def __init__(
        self,
        server: str,
        token: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        session_factory: Callable[[], requests.Session] = requests.Session,
    ):
        self.server = normalize_server(server)
        self.token = token
        self.timeout = timeout
        self._session_factory = session_factory
        self._local = threading.local()

    # --- plumbing ------------------------------------------------------------------------------------

    @property
    def session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = self._session_factory()
            session.headers["User-Agent"] = USER_AGENT
        return session

    def url(self, path: str) -> str:
        return f"{self.server}{API_PREFIX}/{path.lstrip('/')}"

    def request(self, method: str, path: str, *, auth: bool = True, **kwargs) -> requests.Response:
        headers = dict(kwargs.pop("headers", None) or {})
        if auth and self.token:
            headers["Authorization"] = f"Token {self.token}"
        kwargs.setdefault("timeout", self.timeout)
        for attempt in range(MAX_THROTTLE_RETRIES + 1):
            if hasattr(kwargs.get("data"), "seek"):  # a streamed body (StreamedUpload) is sent again whole
                kwargs["data"].seek(0)
            files = kwargs.get("files") or {}
            for _, value in files.items() if isinstance(files, dict) else files:
                if hasattr(value[1], "seek"):  # rewind uploads before a retry (bytes need none)
                    value[1].seek(0)
            try:
                response = self.session.request(method, self.url(path), headers=headers, **kwargs)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise Unreachable(self.server, connection_reason(exc)) from exc
            wait = retry_after(response)
            if response.status_code != 429 or wait is None or wait > MAX_THROTTLE_WAIT:
                break
            if attempt < MAX_THROTTLE_RETRIES:
                time.sleep(wait)
        if response.status_code >= 400:
            detail, payload = error_detail(response)
            cls = AuthError if response.status_code == 401 else ApiError
            raise cls(response.status_code, detail, payload, path)
        return response

    def json(self, method: str, path: str, **kwargs) -> Any:
        response = self.request(method, path, **kwargs)
        if response.status_code == 204 or not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise ApiError(
                response.status_code, f"the server's answer to {path} is not JSON (is the server URL right?)"
            ) from exc

    def paginate(self, path: str, params: dict | None = None) -> Iterator[dict]:
        """Every result of a paginated list, following `next` links (plain lists are accepted too)."""
        params = {key: value for key, value in (params or {}).items() if value not in (None, "")}
        page = 1
        while True:
            body = self.json("GET", path, params={**params, "page": page} if page > 1 else params)
            if isinstance(body, list):
                yield from body
                return
            yield from body.get("results", [])
            if not body.get("next"):
                return
            page += 1

    # --- auth ----------------------------------------------------------------------------------------

    def obtain_token(self, username: str, password: str) -> str:
        # No Authorization header: a stale token would make even this public endpoint answer 401.
        body = self.json("POST", "auth/token", auth=False, json={"username": username, "password": password})
        return body["token"]

    # --- pairs ---------------------------------------------------------------------------------------

    def list_pairs(self, tag: str | None = None, content_hash: str | None = None) -> Iterator[dict]:
        return self.paginate("pairs", {"tag": tag, "content_hash": content_hash})

    def find_pair(self, digest: str) -> dict | None:
        body = self.json("GET", "pairs", params={"content_hash": digest})
        results = body if isinstance(body, list) else body.get("results", [])
        return next((pair for pair in results if pair.get("content_hash", digest) == digest), None)

    def upload_pair(
        self,
        before: Path,
        after: Path,
        *,
        mask: Path | None = None,
        name: str | None = None,
        tags: list[str] | None = None,
    ) -> dict:
        data = {}
        if name:
            data["name"] = name
        if tags:
            data["tags"] = ",".join(tags)
        handles: list[BinaryIO] = []
        try:
            files = {}
            for field, path in (("before", before), ("after", after), ("mask", mask)):
                if path is not None:
                    handle = open(path, "rb")
                    handles.append(handle)
                    files[field] = (Path(path).name, handle)
            return self.json("POST", "pairs", data=data, files=files)
        finally:
            for handle in handles:
                handle.close()

    def start_import(
        self, archive: Path, tags: list[str] | None = None, on_progress: Callable[[int], None] | None = None
    ) -> dict:
        """Send a zip of before/ and after/ folders to pairs/bulk -> the import the server started (202).

        The zip is streamed from disk, not read into memory (it may be 500 MB); `on_progress(bytes)` is
        called as its bytes are sent. Follow the import with get_import.
        """
        fields = {"tags": ",".join(tags)} if tags else {}
        with StreamedUpload(fields, "file", Path(archive), "application/zip", on_progress) as body:
            return self.json("POST", "pairs/bulk", data=body, headers={"Content-Type": body.content_type})

    def get_import(self, import_id: int) -> dict:
        return self.json("GET", f"pairs/imports/{import_id}")

    def latest_import(self) -> dict | None:
        body = self.json("GET", "pairs/imports")
        results = body if isinstance(body, list) else body.get("results", [])
        return results[0] if results else None

    def get_pair(self, pair_id: int) -> dict:
        return self.json("GET", f"pairs/{pair_id}")

    def delete_pair(self, pair_id: int) -> None:
        self.request("DELETE", f"pairs/{pair_id}")

    # --- jobs ----------------------------------------------------------------------------------------

    def create_job(self, **options) -> dict:
        return self.json("POST", "jobs", json={k: v for k, v in options.items() if v is not None})

    def latest_job(self) -> dict | None:
        body = self.json("GET", "jobs")
        results = body if isinstance(body, list) else body.get("results", [])
        if not results:
            return None
        return max(results, key=lambda job: (job.get("created_at") or "", job.get("id") or 0))

    def list_jobs(self) -> Iterator[dict]:
        return self.paginate("jobs")

    def get_job(self, job_id: int) -> dict:
        return self.json("GET", f"jobs/{job_id}")

    def cancel_job(self, job_id: int) -> dict:
        return self.json("POST", f"jobs/{job_id}/cancel")

    def job_events(self, job_id: int) -> list[dict]:
        body = self.json("GET", f"jobs/{job_id}/events")
        return body if isinstance(body, list) else body.get("results", [])

    # --- models --------------------------------------------------------------------------------------

    def list_models(self) -> list[dict]:
        return list(self.paginate("models"))

    def activate_model(self, model_id: int) -> dict:
        return self.json("POST", f"models/{model_id}/activate")

    # --- predictions ---------------------------------------------------------------------------------

    def predict(self, image: Path, strength: float = 1.0) -> dict:
        """{"adjustments": {slider: int}, "model": {"id", "version", "kind"}}"""
        with open(image, "rb") as handle:
            return self.json(
                "POST",
                "predict",
                data={"strength": str(strength), "format": "json"},
                files={"image": (Path(image).name, handle)},
            )

    def predict_xmp(self, image: Path, strength: float = 1.0) -> str:
        """The XMP sidecar text for the photo (Lightroom / Camera Raw `crs:` settings)."""
        with open(image, "rb") as handle:
            response = self.request(
                "POST",
                "predict",
                data={"strength": str(strength), "format": "xmp"},
                files={"image": (Path(image).name, handle)},
            )
        return response.content.decode(response.encoding or "utf-8")

    def render(
        self,
        image: Path,
        adjustments: dict | None = None,
        strength: float = 1.0,
        max_size: int | None = None,
    ) -> bytes:
        """The photo edited with `adjustments` (default: the editor's model's prediction), as JPEG bytes."""
        data: dict[str, str] = {"strength": str(strength)}
        if adjustments is not None:
            data["adjustments"] = json.dumps(adjustments)
        if max_size:
            data["max_size"] = str(max_size)
        with open(image, "rb") as handle:
            response = self.request("POST", "render", data=data, files={"image": (Path(image).name, handle)})
        return response.content

    def batch_limits(self) -> dict:
        """{"model": the model answering now, "max_previews", "preview_size", "max_preview_side"}"""
        return self.json("GET", "predict/batch")

    def predict_batch(
        self, previews: list[tuple[str, bytes]], strength: float = 1.0, format: str = "xmp"
    ) -> tuple[dict, int]:
        """Sliders (and with format=xmp each sidecar's text) for (file name, preview bytes) pairs.

        -> ({"model": {...}, "results": [{"name", "adjustments", "xmp"} or {"name", "error"}, ...] in
        order}, bytes sent). previews are PNG or JPEG bytes as personalize.client.previews makes them.
        """
        files = [
            ("previews", (name, data, "image/png" if data[:4] == b"\x89PNG" else "image/jpeg"))
            for name, data in previews
        ]
        response = self.request(
            "POST", "predict/batch", data={"strength": str(strength), "format": format}, files=files
        )
        try:
            body = response.json()
        except ValueError as exc:
            raise ApiError(response.status_code, "the server's answer to predict/batch is not JSON") from exc
        return body, len(response.request.body or b"")
