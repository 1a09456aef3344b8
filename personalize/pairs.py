"""Storing an editor's before/after pairs: validate everything first, then write files and row together.

Thumbnails and the face/priority mask the trainer needs are computed here, once, at upload, so that a
training job reads three small PNGs per pair and never decodes a full photo or runs face detection.

Every upload (one pair, a bulk zip, the editor's CLI through the API) goes through ``prepare_pair``,
which finds the after's frame in the before (rlcore.align: crop, straightening, export size) and refuses a
pair whose after is not the same photo. The before's thumbnail and the mask are then cut from the region
the after shows, turned into its frame, so that every pixel the reward compares shows the same place.
"""

from __future__ import annotations

import io
import lzma
import posixpath
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import NamedTuple

import numpy as np
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.files.base import ContentFile
from django.db import transaction
from PIL import Image

from personalize.client.conventions import is_photo, pair_hash, stem_key
from personalize.images import (
    UploadedPhoto,
    UploadError,
    check_min_size,
    decode_mask,
    inspect_bytes,
    png_bytes,
    read_upload,
)
from personalize.models import Pair, PairTag
from rlcore.align import Alignment, NotAligned, align, warp_before
from rlcore.faces import detect_faces, face_mask
from rlcore.imageio import THUMB_SIZE, thumbnail

# Photos are decoded at most this large for thumbnails and face detection (JPEGs in draft mode).
ANALYSIS_SIDE = 1024
MAX_TAGS = 20


def parse_tags(raw) -> list[str]:
    """Tags arrive as a comma-separated string or as repeated form fields."""
    values = raw if isinstance(raw, list | tuple) else [raw or ""]
    tags = sorted({tag.strip() for value in values for tag in str(value).split(",") if tag.strip()})
    for tag in tags:
        if len(tag) > 64:
            raise UploadError("tags", f"tag '{tag[:20]}...' is longer than 64 characters")
    if len(tags) > MAX_TAGS:
        raise UploadError("tags", f"at most {MAX_TAGS} tags per pair")
    return tags


def content_hash(before: bytes, after: bytes) -> str:
    return pair_hash((before, after))


def uploaded_before(owner, digest: str) -> Pair | None:
    """The editor's pair with these exact before and after files, if any (other editors' do not count)."""
    return Pair.objects.filter(owner=owner, content_hash=digest).order_by("pk").first()


@dataclass
class PreparedPair:
    """Everything a Pair row needs, computed in memory; nothing is stored yet."""

    before: UploadedPhoto
    after: UploadedPhoto
    before_thumb: bytes  # the before's region the after shows
    after_thumb: bytes
    mask_thumb: bytes | None
    mask_source: str
    faces: int
    mask_data: bytes | None = None
    tags: list[str] = field(default_factory=list)
    alignment: dict = field(default_factory=dict)  # Alignment.to_json() at the photos' full sizes
    view_thumb: bytes | None = None  # the whole before, where the after shows only a part of it


def align_photos(
    before: UploadedPhoto, after: UploadedPhoto, before_image: np.ndarray, after_image: np.ndarray
) -> Alignment:
    """Where the after's frame sits in the before, at the photos' full sizes; UploadError when nowhere.

    The decoded images may be smaller than the files (draft-mode decoding); the transform found between
    them is scaled to the files' sizes, which is what is stored and shown.
    """
    try:
        found = align(before_image, after_image)
    except NotAligned as exc:
        photo = after if exc.side == "after" else before
        other = before if photo is after else after
        reason = exc.reason
        if photo.filename or other.filename:
            # Name the files, as the editor knows them: which one of which pair.
            reason = reason.replace(f"the {photo.field}", f"the {photo.label}", 1)
            reason = reason.replace(f"the {other.field}", f"the {other.label}", 1)
        raise UploadError(photo.field, reason) from exc
    return found.resized((before.width, before.height), (after.width, after.height))


def prepare_pair(before: UploadedPhoto, after: UploadedPhoto, mask_upload=None) -> PreparedPair:
    check_min_size(before)
    check_min_size(after)
    before_image = before.decode(max_side=ANALYSIS_SIDE)
    after_image = after.decode(max_side=ANALYSIS_SIDE)
    alignment = align_photos(before, after, before_image, after_image)
    # The before's region the after shows, in the after's frame, at the decoded before's resolution.
    region = warp_before(before_image, alignment)
    size = (THUMB_SIZE, THUMB_SIZE)
    mask_data = None
    faces = 0
    if mask_upload is not None:
        # A client's mask is drawn over the before photo: it is cut and turned like the before.
        full_mask, mask_data = decode_mask(
            "mask", mask_upload, (before_image.shape[1], before_image.shape[0])
        )
        mask = warp_before(full_mask, alignment, out_size=(region.shape[1], region.shape[0]))
        mask_source = Pair.MaskSource.UPLOADED
    else:
        boxes = detect_faces(region)
        faces = len(boxes)
        mask = face_mask(region, boxes) if faces else None  # the detector runs once
        mask_source = Pair.MaskSource.DETECTED if faces else Pair.MaskSource.NONE
    mask_thumb = None
    if mask is not None:
        mask = np.asarray(Image.fromarray(mask.astype(np.float32)).resize(size, Image.Resampling.BOX))
        mask_thumb = png_bytes(np.clip(np.rint(mask * 255), 0, 255).astype(np.uint8))
    return PreparedPair(
        before=before,
        after=after,
        before_thumb=png_bytes(thumbnail(region)),
        after_thumb=png_bytes(thumbnail(after_image)),
        mask_thumb=mask_thumb,
        mask_source=mask_source,
        faces=faces,
        mask_data=mask_data,
        alignment=alignment.to_json(),
        view_thumb=None if alignment.is_identity else png_bytes(thumbnail(before_image)),
    )


def pair_alignment(pair: Pair) -> Alignment:
    """A stored pair's alignment (pairs stored before alignment existed are the identity)."""
    return Alignment.from_json(
        pair.alignment, (pair.before_width, pair.before_height), (pair.after_width, pair.after_height)
    )


def store_pair(
    owner, prepared: PreparedPair, name: str = "", tags: list[str] = (), then=None
) -> tuple[Pair, bool]:
    """Write the files and the row; if anything fails, remove every file already written.

    Returns (pair, created): when the editor already has a pair with the same content hash (an identical
    upload that finished first), that pair, unchanged, and this one's files are removed. `then(pair,
    created)`, when given, runs inside the row's transaction: what it writes commits with the pair, and
    if it raises, neither the row nor the files are kept.
    """
    pair = Pair(
        owner=owner,
        name=name,
        content_hash=content_hash(prepared.before.data, prepared.after.data),
        mask_source=prepared.mask_source,
        faces=prepared.faces,
        before_width=prepared.before.width,
        before_height=prepared.before.height,
        after_width=prepared.after.width,
        after_height=prepared.after.height,
        alignment=prepared.alignment,
    )
    files = [
        (pair.before, f"before.{prepared.before.extension}", prepared.before.data),
        (pair.after, f"after.{prepared.after.extension}", prepared.after.data),
        (pair.before_thumb, "before_thumb.png", prepared.before_thumb),
        (pair.after_thumb, "after_thumb.png", prepared.after_thumb),
    ]
    if prepared.mask_data is not None:
        files.append((pair.mask, "mask.png", prepared.mask_data))
    if prepared.mask_thumb is not None:
        files.append((pair.mask_thumb, "mask_thumb.png", prepared.mask_thumb))
    if prepared.view_thumb is not None:
        files.append((pair.view_thumb, "view_thumb.png", prepared.view_thumb))
    written = []
    storage = pair.before.storage
    try:
        for file_field, filename, data in files:
            file_field.save(filename, ContentFile(data), save=False)
            written.append(file_field.name)
        with transaction.atomic():
            # Locking the editor's row makes identical uploads sent at once check and insert one after the
            # other, so one pair is stored (SQLite's immediate transactions serialize them anyway).
            get_user_model().objects.select_for_update().filter(pk=owner.pk).exists()
            existing = uploaded_before(owner, pair.content_hash)
            if existing is None:
                pair.save()
                PairTag.objects.bulk_create([PairTag(pair=pair, name=tag) for tag in tags])
            if then is not None:
                then(pair if existing is None else existing, existing is None)
    except BaseException:
        for path in written:
            storage.delete(path)
        raise
    if existing is not None:
        for path in written:
            storage.delete(path)
        return existing, False
    return pair, True


def delete_pair(pair: Pair) -> None:
    """Remove the row, then its files (a failure to delete a file leaves an orphan the sweeper removes)."""
    names = [
        f.name
        for f in (
            pair.before,
            pair.after,
            pair.mask,
            pair.before_thumb,
            pair.after_thumb,
            pair.mask_thumb,
            pair.view_thumb,
        )  # fmt: skip
    ]
    storage = pair.before.storage
    pair.delete()
    for name in names:
        if name:
            storage.delete(name)


# ---------------------------------------------------------------------------------------------------------
# Bulk upload: a zip with before/ and after/ folders matched by file name (stem, case-insensitive).


def _safe_member_path(name: str) -> PurePosixPath:
    path = PurePosixPath(name)
    if name.startswith("/") or "\\" in name or ".." in path.parts or posixpath.isabs(name):
        raise UploadError("file", f"the zip contains an unsafe path '{name}'; nothing was stored")
    return path


# What zipfile raises on damaged data, by where it is found: the archive's structure, a CRC or size that
# does not match (BadZipFile), data that ends early (EOFError), a corrupt deflate, bzip2 (OSError) or LZMA
# stream, a nonsensical header field (ValueError), an unsupported feature (NotImplementedError,
# RuntimeError).
_ZIP_ERRORS = (
    zipfile.BadZipFile,
    EOFError,
    OSError,
    ValueError,
    NotImplementedError,
    RuntimeError,
    zlib.error,
    lzma.LZMAError,
)
_ZIP_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}


def _member_chunks(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> Iterator[bytes]:
    """An entry's bytes, a megabyte at a time, its CRC and size checked (UploadError when they do not
    match). The encrypted and the unsupported are named before trying to read them."""

    def refused(reason: str) -> UploadError:
        return UploadError("file", f"the zip entry '{info.filename}' {reason}")

    if info.flag_bits & 0x1:
        raise refused("is encrypted (password-protected zips are not accepted)")
    if info.compress_type not in _ZIP_METHODS:
        raise refused(
            f"uses compression method {info.compress_type}, which is not supported "
            "(use deflate, bzip2, LZMA or none)"
        )
    size = 0
    try:
        with archive.open(info) as handle:
            while chunk := handle.read(1 << 20):
                size += len(chunk)
                yield chunk
    except _ZIP_ERRORS as exc:
        raise refused(f"is damaged ({exc})") from exc
    # zipfile stops at the compressed data's end without noticing a declared size larger than what is there.
    if size != info.file_size:
        raise refused(f"is damaged (its header says {info.file_size} bytes; it holds {size})")


def read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    return b"".join(_member_chunks(archive, info))


def match_by_name(names: list[str]) -> tuple[list[tuple[str, str, str]], list[dict]]:
    """Pair file paths by name, as a bulk zip and the web app's folder upload do.

    A file's side is a folder named before/ or after/ anywhere in its path (any case); a before and an after
    with the same stem (case-insensitive, any supported extension) are a pair. Returns ([(stem, before path,
    after path)] sorted by stem, [skipped {name, reason}]); raises UploadError for an unsafe path.
    """
    sides: dict[str, dict[str, str]] = {"before": {}, "after": {}}
    skipped = []
    for name in names:
        path = _safe_member_path(name)
        parts = [p for p in path.parts if p not in ("", ".")]
        if "__MACOSX" in parts or path.name.startswith("."):
            continue
        side = next((p.lower() for p in parts[:-1] if p.lower() in sides), None)
        if side is None or not is_photo(path):
            skipped.append({"name": name, "reason": "not an image inside before/ or after/"})
            continue
        stem = stem_key(path)
        if stem in sides[side]:
            skipped.append({"name": name, "reason": f"another {side} file has the name '{stem}'"})
            continue
        sides[side][stem] = name
    matched = []
    for stem in sorted(set(sides["before"]) | set(sides["after"])):
        if stem not in sides["after"]:
            skipped.append({"name": sides["before"][stem], "reason": "no after/ file with this name"})
        elif stem not in sides["before"]:
            skipped.append({"name": sides["after"][stem], "reason": "no before/ file with this name"})
        else:
            matched.append((stem, sides["before"][stem], sides["after"][stem]))
    return matched, skipped


@dataclass(frozen=True)
class BulkItem:
    """One pair of a bulk zip: its name (the stem) and its two entries."""

    name: str
    before: zipfile.ZipInfo
    after: zipfile.ZipInfo


def open_bulk_zip(file) -> zipfile.ZipFile:
    if file is None:
        raise UploadError("file", "this file is required")
    try:
        return zipfile.ZipFile(file)
    except _ZIP_ERRORS as exc:
        raise UploadError("file", f"not a readable zip archive ({exc})") from exc


def plan_bulk_zip(archive: zipfile.ZipFile) -> tuple[list[BulkItem], list[dict]]:
    """The zip's pairs in the order they are imported, and the files skipped by name ({name, reason}).

    Only the archive's directory is read, and the same archive always gives the same plan: a worker
    resuming an import counts on it. Raises UploadError (the whole zip refused) for an unsafe path or a
    zip too large when unpacked.
    """
    members = [info for info in archive.infolist() if not info.is_dir()]
    total = 0
    for info in members:
        _safe_member_path(info.filename)
        total += info.file_size
    if total > settings.MAX_BULK_UPLOAD_BYTES:
        raise UploadError(
            "file",
            f"the zip unpacks to {total} bytes; the limit is {settings.MAX_BULK_UPLOAD_BYTES} bytes",
        )
    by_name: dict[str, zipfile.ZipInfo] = {}
    for info in members:  # a name twice in the zip: the first entry, the second skipped by name
        by_name.setdefault(info.filename, info)
    matched, skipped = match_by_name([info.filename for info in members])
    items = []
    for stem, before_name, after_name in matched:
        before_info, after_info = by_name[before_name], by_name[after_name]
        too_big = [i for i in (before_info, after_info) if i.file_size > settings.MAX_UPLOAD_BYTES]
        if too_big:
            skipped.append({"name": stem, "reason": f"{too_big[0].filename} is over the upload limit"})
        else:
            items.append(BulkItem(stem, before_info, after_info))
    return items, skipped


def check_bulk_zip(file) -> tuple[list[BulkItem], list[dict]]:
    """plan_bulk_zip, after reading every entry of a pair through (CRC and size; no photo is decoded).

    One damaged entry refuses the whole zip before anything is stored: what else in it can be trusted?
    """
    with open_bulk_zip(file) as archive:
        items, skipped = plan_bulk_zip(archive)
        try:
            for item in items:
                for info in (item.before, item.after):
                    for _ in _member_chunks(archive, info):
                        pass
        except UploadError as exc:
            raise UploadError(exc.field, f"{exc.reason}; nothing was stored") from exc
    return items, skipped


def import_bulk_item(owner, archive: zipfile.ZipFile, item: BulkItem, tags: list[str], record) -> None:
    """Store one pair of a bulk zip, or skip it with the reason the single-pair upload gives.

    `record(stored={"id", "name"})` or `record(skipped={"name", "reason"[, "pair"]})` is called once with
    the outcome; for a stored pair inside the transaction that inserts its row, so that the pair and its
    record are committed together or not at all (files already written are then removed).
    """

    def already(pair: Pair) -> dict:
        return {"name": item.name, "reason": f"already uploaded as pair {pair.pk}", "pair": pair.pk}

    before_data = read_member(archive, item.before)
    after_data = read_member(archive, item.after)
    existing = uploaded_before(owner, content_hash(before_data, after_data))
    if existing is not None:  # from an earlier upload, or earlier in this zip
        record(skipped=already(existing))
        return
    try:
        before = inspect_bytes("before", before_data)
        after = inspect_bytes("after", after_data)
        prepared = prepare_pair(before, after)
    except UploadError as exc:
        record(skipped={"name": item.name, "reason": f"{exc.field}: {exc.reason}"})
        return

    def then(pair: Pair, created: bool) -> None:
        if created:
            record(stored={"id": pair.pk, "name": pair.name})
        else:  # an identical upload sent meanwhile was stored first
            record(skipped=already(pair))

    store_pair(owner, prepared, name=item.name, tags=tags, then=then)


def upload_pair(owner, before_file, after_file, mask_file=None, name: str = "", tags=()) -> tuple[Pair, bool]:
    """Returns (pair, created): an upload of the same before and after files as one of the editor's pairs
    returns that pair, unchanged, before any decoding."""
    before = read_upload("before", before_file)
    after = read_upload("after", after_file)
    existing = uploaded_before(owner, content_hash(before.data, after.data))
    if existing is not None:
        return existing, False
    prepared = prepare_pair(before, after, mask_file)
    return store_pair(owner, prepared, name=name or _stem(getattr(before_file, "name", "")), tags=list(tags))


def _stem(filename: str) -> str:
    return PurePosixPath(filename or "").stem[:255]


class Thumbnails(NamedTuple):
    """A pair's thumbnails as stored at upload (uint8 HxWx3 images)."""

    before: np.ndarray  # the before's region the after shows: compared with the after pixel for pixel
    after: np.ndarray
    mask: np.ndarray | None  # float32 HxW in 0..1: face weights' mask, or None
    view: np.ndarray  # the whole before, what the model sees of the photo (the before, for uncropped pairs)


def pair_thumbnails(pair: Pair) -> Thumbnails:
    def load(file_field):
        with file_field.open("rb") as handle:
            return np.asarray(Image.open(io.BytesIO(handle.read())))

    mask = load(pair.mask_thumb).astype(np.float32) / 255.0 if pair.mask_thumb else None
    before = load(pair.before_thumb)
    return Thumbnails(
        before, load(pair.after_thumb), mask, load(pair.view_thumb) if pair.view_thumb else before
    )
