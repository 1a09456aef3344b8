"""`personalize-client predict FOLDER --xmp`: a whole shoot to XMP sidecars, sending previews, not files.

1. plan: each photo's sidecar (beside it, or in --out); photos whose sidecar is up to date (written by this
   client for the same photo, by the model now serving, at the same strength) are skipped, and so are
   sidecars this client did not write (the editor's own settings) unless --overwrite;
2. decode: the photos become 64x64 previews in worker processes, one per core (previews.py);
3. send: previews go in batches to POST /api/v1/predict/batch, a few batches in flight at once, while the
   workers decode the next ones;
4. write: each answer's sidecar is stamped with where it came from and written atomically.

A preview that fails (unreadable photo, the server's error for it) fails that photo only; the summary lists
every failure and skip with its reason. A lost connection or a refused token stops the run: what was
written stays written, and running the same command again resumes where it stopped.
"""

from __future__ import annotations

import multiprocessing
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from personalize.client.api import ApiError, Client
from personalize.client.common import write_atomically
from personalize.client.previews import NoPreview, PreviewError, is_raw, make_preview

# The sidecar's record of where it came from, in a namespace of our own that XMP readers ignore.
STAMP_NS = "urn:personalize:sidecar:1"
RDF_NS = "http://www.w3.org/1999/02/22-rdf-syntax-ns#"
_NAMESPACES = {
    "x": "adobe:ns:meta/",
    "rdf": RDF_NS,
    "crs": "http://ns.adobe.com/camera-raw-settings/1.0/",
    "personalize": STAMP_NS,
}
_XPACKET_BEGIN = '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
_MAX_SIDECAR_BYTES = 1 << 20  # larger files are not sidecars this client wrote: not parsed
SENDERS = 2  # batches in flight: one on the wire or in the server while the next is being answered


@dataclass
class Photo:
    path: Path
    sidecar: Path
    signature: str  # the photo file's size and modification time when it was read


@dataclass
class Stats:
    decode_cpu_s: float = 0.0  # summed over the worker processes
    requests: int = 0
    request_s: float = 0.0  # summed round trips of the batch requests (they overlap)
    bytes_sent: int = 0


@dataclass
class Outcome:
    done: list[tuple[Photo, dict]] = field(default_factory=list)  # (photo, its result: adjustments, model)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    models: set[str] = field(default_factory=set)
    stats: Stats = field(default_factory=Stats)


# --- sidecars ---------------------------------------------------------------------------------------------


def model_label(model: dict) -> str:
    """'personal 12 v3' or 'base - vbase-1': what a sidecar's stamp records and the summary prints."""
    return f"{model.get('kind')} {model.get('id') if model.get('id') is not None else '-'} v{model.get('version')}"


def photo_signature(path: Path) -> str:
    status = path.stat()
    return f"{status.st_size}:{status.st_mtime_ns}"


def expected_stamp(photo: Photo, model: dict, strength: float) -> dict[str, str]:
    return {"model": model_label(model), "strength": f"{strength:g}", "photo": photo.signature}


def read_stamp(sidecar: Path) -> dict[str, str] | None:
    """The stamp of a sidecar this client wrote; None for anyone else's (or an unreadable one)."""
    try:
        if sidecar.stat().st_size > _MAX_SIDECAR_BYTES:
            return None
        root = ET.parse(sidecar).getroot()
    except (OSError, ET.ParseError):
        return None
    for element in root.iter(f"{{{RDF_NS}}}Description"):
        stamp = {key[len(STAMP_NS) + 2 :]: value for key, value in element.attrib.items() if STAMP_NS in key}
        if stamp:
            return stamp
    return None


def stamped(xmp: str, stamp: dict[str, str]) -> str:
    """The server's sidecar text with our stamp added to its rdf:Description."""
    for prefix, uri in _NAMESPACES.items():
        ET.register_namespace(prefix, uri)
    root = ET.fromstring(xmp)
    description = next(root.iter(f"{{{RDF_NS}}}Description"))
    for key, value in stamp.items():
        description.set(f"{{{STAMP_NS}}}{key}", value)
    return f'{_XPACKET_BEGIN}\n{ET.tostring(root, encoding="unicode")}\n<?xpacket end="w"?>\n'


# --- plan -------------------------------------------------------------------------------------------------


def plan(
    images: list[Path], out_dir: Path | None, overwrite: bool, model: dict, strength: float
) -> tuple[list[Photo], list[tuple[Path, str]]]:
    """(photos to predict, (photo, why skipped) for the others)."""
    todo: list[Photo] = []
    skipped: list[tuple[Path, str]] = []
    owners: dict[Path, Path] = {}
    # A RAW file and its JPEG twin (shot RAW+JPEG) share NAME.xmp: the RAW, the photo editors develop,
    # gets it.
    for path in sorted(images, key=lambda p: (not is_raw(p), str(p))):
        sidecar = (out_dir or path.parent) / f"{path.stem}.xmp"
        if sidecar in owners:
            skipped.append((path, f"shares its sidecar {sidecar.name} with {owners[sidecar].name}"))
            continue
        owners[sidecar] = path
        photo = Photo(path, sidecar, photo_signature(path))
        if sidecar.exists():
            stamp = read_stamp(sidecar)
            if stamp == expected_stamp(photo, model, strength):
                skipped.append((path, "up to date"))
                continue
            if stamp is None and not overwrite:
                skipped.append(
                    (path, f"{sidecar.name} was not written by this client (--overwrite replaces it)")
                )
                continue
        todo.append(photo)
    todo.sort(key=lambda photo: str(photo.path))
    return todo, skipped


# --- decode, send, write ------------------------------------------------------------------------------------


def run(
    client: Client,
    todo: list[Photo],
    *,
    strength: float,
    limits: dict,
    jobs: int,
    on_photo: Callable[[Photo, dict | None, str | None], None],
) -> Outcome:
    """Predict and write every photo's sidecar; on_photo(photo, result or None, error or None) per photo."""
    outcome = Outcome()
    batch_size = max(1, int(limits.get("max_previews") or 1))
    size = int(limits.get("preview_size") or 64)
    # spawn, not fork: the same on every OS, and no copy of this process's threads and sockets.
    context = multiprocessing.get_context("spawn")
    with (
        ProcessPoolExecutor(max_workers=jobs, mp_context=context) as decoders,
        ThreadPoolExecutor(max_workers=SENDERS) as senders,
    ):
        decoding = {decoders.submit(make_preview, photo.path, size): photo for photo in todo}
        sending: dict[Future, list[Photo]] = {}
        batch: list[tuple[Photo, bytes]] = []

        def send(ready: list[tuple[Photo, bytes]]) -> None:
            previews = [(f"{index}-{photo.path.name}", data) for index, (photo, data) in enumerate(ready)]
            future = senders.submit(_send, client, previews, strength)
            sending[future] = [photo for photo, _ in ready]

        try:
            pending: set[Future] = set(decoding)
            while pending or sending:
                finished, _ = wait(pending | set(sending), return_when=FIRST_COMPLETED)
                for future in finished:
                    if future in sending:
                        _answered(future, sending.pop(future), strength, outcome, on_photo)
                        continue
                    pending.discard(future)
                    photo = decoding.pop(future)
                    try:
                        data, cpu = future.result()
                    except NoPreview as exc:
                        outcome.skipped.append((photo.path, str(exc)))
                        on_photo(photo, None, None)
                        continue
                    except PreviewError as exc:
                        outcome.failed.append((photo.path, str(exc)))
                        on_photo(photo, None, str(exc))
                        continue
                    outcome.stats.decode_cpu_s += cpu
                    batch.append((photo, data))
                    if len(batch) == batch_size:
                        send(batch)
                        batch = []
                if not pending and batch:
                    send(batch)
                    batch = []
        except BaseException:
            for future in [*decoding, *sending]:
                future.cancel()
            raise
    return outcome


def _send(client: Client, previews: list[tuple[str, bytes]], strength: float) -> tuple[dict, int, float]:
    started = time.perf_counter()
    body, sent = client.predict_batch(previews, strength=strength, format="xmp")
    return body, sent, time.perf_counter() - started


def _answered(future: Future, photos: list[Photo], strength: float, outcome: Outcome, on_photo) -> None:
    try:
        body, sent, seconds = future.result()
    except ApiError as exc:  # the whole batch refused (AuthError and Unreachable stop the run)
        if exc.status == 401:
            raise
        for photo in photos:
            outcome.failed.append((photo.path, exc.detail))
            on_photo(photo, None, exc.detail)
        return
    outcome.stats.requests += 1
    outcome.stats.request_s += seconds
    outcome.stats.bytes_sent += sent
    model = body.get("model") or {}
    results = body.get("results") or []
    if len(results) != len(photos):
        reason = f"the server answered {len(results)} results for {len(photos)} previews"
        for photo in photos:
            outcome.failed.append((photo.path, reason))
            on_photo(photo, None, reason)
        return
    outcome.models.add(model_label(model))
    for photo, result in zip(photos, results, strict=True):
        if "error" in result or "xmp" not in result:
            reason = result.get("error") or "the server sent no sidecar"
            outcome.failed.append((photo.path, reason))
            on_photo(photo, None, reason)
            continue
        try:
            write_atomically(photo.sidecar, stamped(result["xmp"], expected_stamp(photo, model, strength)))
        except (OSError, ET.ParseError) as exc:
            outcome.failed.append((photo.path, f"cannot write {photo.sidecar}: {exc}"))
            on_photo(photo, None, str(exc))
            continue
        record = {"adjustments": result.get("adjustments") or {}, "model": model}
        outcome.done.append((photo, record))
        on_photo(photo, record, None)
