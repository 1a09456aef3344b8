"""The HTTP API through Django's test client: auth, uploads and their rejections, jobs, predictions."""

import io
import json
import os
import re
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zipfile

import numpy as np
import pytest
import redis
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image
from rest_framework.test import APIClient

from personalize.accounts import create_or_get_editor
from personalize.models import JobEvent, Pair, TrainingJob
from personalize.pairs import pair_thumbnails
from rlcore.editor import ADJUSTMENTS
from tests.photos import crop, encode, flat_png, pair_bytes, photo, warm_and_bright

pytestmark = pytest.mark.django_db


def api_client(username: str) -> APIClient:
    _, token = create_or_get_editor(username, password=f"{username}-password-123")
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


@pytest.fixture
def alice():
    return api_client("alice")


@pytest.fixture
def bob():
    return api_client("bob")


def upload(
    client, before: bytes, after: bytes, name="pair", before_name="b.jpg", after_name="a.jpg", **extra
):
    files = {
        "before": SimpleUploadedFile(before_name, before),
        "after": SimpleUploadedFile(after_name, after),
        "name": name,
        **extra,
    }
    return client.post("/api/v1/pairs", files, format="multipart")


def stored_files(media_root) -> list:
    return [p for p in media_root.rglob("*") if p.is_file()]


def test_token_auth(client):
    create_or_get_editor("carol", password="carol-password-123")
    good = client.post("/api/v1/auth/token", {"username": "carol", "password": "carol-password-123"})
    assert good.status_code == 200 and len(good.json()["token"]) == 40
    bad = client.post("/api/v1/auth/token", {"username": "carol", "password": "wrong"})
    assert bad.status_code == 400
    assert client.get("/api/v1/pairs").status_code == 401
    client.credentials = None
    wrong = APIClient()
    wrong.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert wrong.get("/api/v1/pairs").status_code == 401


def test_token_lookup_answers_as_drf_does():
    """personalize.authentication writes DRF's token query as SQL: the same user and token, field by field
    (types included: SQLite's booleans and datetimes converted), and the same refusals."""
    from rest_framework import authentication
    from rest_framework.exceptions import AuthenticationFailed

    from personalize.authentication import TokenAuthentication

    user, key = create_or_get_editor("erin", password="erin-password-123")
    ours, drfs = TokenAuthentication(), authentication.TokenAuthentication()
    (u1, t1), (u2, t2) = ours.authenticate_credentials(key), drfs.authenticate_credentials(key)
    for field in type(u2)._meta.concrete_fields:
        a, b = getattr(u1, field.attname), getattr(u2, field.attname)
        assert (a, type(a)) == (b, type(b)), field.name
    assert (t1.key, t1.user_id, t1.created, t1.user) == (t2.key, t2.user_id, t2.created, t2.user)
    assert type(t1.created) is type(t2.created) and t1.user is u1
    for auth in (ours, drfs):  # an unknown key, then an inactive user: the same message from both
        with pytest.raises(AuthenticationFailed, match="Invalid token"):
            auth.authenticate_credentials("0" * 40)
    type(user).objects.filter(pk=user.pk).update(is_active=False)
    for auth in (ours, drfs):
        with pytest.raises(AuthenticationFailed, match="User inactive or deleted"):
            auth.authenticate_credentials(key)


def test_createeditor_prints_token_last(capsys):
    from django.core.management import call_command

    call_command("createeditor", "dave")
    token = capsys.readouterr().out.split()[-1]
    assert APIClient(HTTP_AUTHORIZATION=f"Token {token}").get("/api/v1/pairs").status_code == 200


def test_upload_list_filter_and_delete(alice, media_root):
    before, after = pair_bytes(0)
    response = upload(alice, before, after, name="beach", tags="summer, client-a")
    assert response.status_code == 201, response.content
    pair = response.json()
    assert pair["tags"] == ["client-a", "summer"]
    assert pair["before_size"] == [160, 160]
    upload(alice, *pair_bytes(1), name="other", tags="winter")

    listed = alice.get("/api/v1/pairs").json()
    assert listed["count"] == 2
    assert [p["name"] for p in alice.get("/api/v1/pairs?tag=summer").json()["results"]] == ["beach"]
    by_hash = alice.get(f"/api/v1/pairs?content_hash={pair['content_hash']}").json()
    assert [p["id"] for p in by_hash["results"]] == [pair["id"]]
    assert alice.get(f"/api/v1/pairs/{pair['id']}").json()["name"] == "beach"
    assert alice.get(f"/api/v1/pairs/{pair['id']}/").status_code == 200  # a trailing slash is fine too

    stored = Pair.objects.get(pk=pair["id"])
    thumb = np.asarray(Image.open(stored.before_thumb.path))
    assert thumb.shape == (64, 64, 3)
    files_before_delete = len(stored_files(media_root))
    assert alice.delete(f"/api/v1/pairs/{pair['id']}").status_code == 204
    assert len(stored_files(media_root)) == files_before_delete - 4
    assert alice.get(f"/api/v1/pairs/{pair['id']}").status_code == 404


def test_detected_faces_are_stored_as_mask(alice):
    astronaut = photo("astronaut")
    response = upload(alice, encode(astronaut), encode(warm_and_bright(astronaut)))
    assert response.status_code == 201
    assert response.json()["mask_source"] == "detected" and response.json()["faces"] >= 1
    coffee = photo("coffee")
    response = upload(alice, encode(coffee), encode(warm_and_bright(coffee)))
    assert response.json()["mask_source"] == "none"


def test_uploaded_mask_is_kept(alice):
    before, after = pair_bytes(2)
    mask = np.zeros((160, 160), np.uint8)
    mask[40:120, 40:120] = 255
    response = upload(alice, before, after, mask=SimpleUploadedFile("m.png", encode(mask, "PNG")))
    assert response.status_code == 201
    stored = Pair.objects.get(pk=response.json()["id"])
    assert stored.mask_source == "uploaded"
    mask_thumb = np.asarray(Image.open(stored.mask_thumb.path))
    assert mask_thumb[32, 32] == 255 and mask_thumb[2, 2] == 0


def truncated_jpeg() -> bytes:
    data = encode(crop(photo("chelsea"), 3), quality=95)
    return data[: len(data) // 2]


def bomb_png() -> bytes:
    """60 megapixels that compress to a few kilobytes: refused from the header, never decoded."""
    buffer = io.BytesIO()
    Image.new("1", (10_000, 6_000)).save(buffer, format="PNG")
    return buffer.getvalue()


BAD_UPLOADS = {
    "zero bytes": (lambda: b"", "before", "empty"),
    "text renamed .jpg": (lambda: b"this is not a photo at all\n" * 20, "before", "not a readable image"),
    "truncated JPEG": (truncated_jpeg, "before", "damaged or incomplete"),
    "60-megapixel bomb": (bomb_png, "before", "megapixels"),
    "GIF": (lambda: encode(crop(photo("coffee"), 1), "GIF"), "before", "not accepted"),
}


@pytest.mark.parametrize("case", BAD_UPLOADS)
def test_bad_upload_is_refused_and_nothing_is_stored(alice, media_root, case):
    make, field, reason = BAD_UPLOADS[case]
    _, after = pair_bytes(4)
    response = upload(alice, make(), after)
    assert response.status_code == 400, response.content
    assert reason in " ".join(response.json()[field])
    assert Pair.objects.count() == 0
    assert stored_files(media_root) == []


def _rss_mib(field: str) -> float:
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) / 1024 for line in status if line.startswith(field + ":"))


@pytest.mark.parametrize("endpoint", ["/api/v1/pairs", "/api/v1/predict"])
def test_png_bomb_is_refused_from_the_header_quickly_and_in_little_memory(alice, media_root, endpoint):
    """0.5 MB of PNG that decodes to 13000x13000x3 = 507 MB: refused without decoding a pixel."""
    bomb = flat_png(13_000, 13_000)
    assert len(bomb) < 1_000_000
    _, after = pair_bytes(5)
    files = {"before": bomb, "after": after} if endpoint.endswith("pairs") else {"image": bomb}
    data = {field: SimpleUploadedFile(f"{field}.png", content) for field, content in files.items()}
    # Writing 5 to clear_refs resets this process's peak resident memory (VmHWM) to the current one.
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    resident = _rss_mib("VmRSS")
    started = time.perf_counter()
    response = alice.post(endpoint, data, format="multipart")
    elapsed = time.perf_counter() - started
    peak = _rss_mib("VmHWM") - resident
    assert response.status_code == 400, response.content
    field = "before" if endpoint.endswith("pairs") else "image"
    assert "13000x13000 = 169.0 megapixels" in response.json()[field][0]
    assert elapsed < 1.0 and peak < 100, (elapsed, peak)
    assert Pair.objects.count() == 0 and stored_files(media_root) == []


def test_png_orientation_is_read_from_the_header(alice):
    image = crop(photo("coffee"), 11, size=200)[:, :120]  # 120 wide, 200 high
    exif = Image.Exif()
    exif[0x0112] = 6  # shown rotated by 90 degrees: 200 wide, 120 high
    before = _save(Image.fromarray(image), "PNG", exif=exif.tobytes())
    after = encode(np.ascontiguousarray(np.rot90(warm_and_bright(image), -1)))
    response = upload(alice, before, after)
    assert response.status_code == 201, response.content
    assert response.json()["before_size"] == [200, 120]


def test_duplicate_upload_answers_the_existing_pair(alice, bob, media_root):
    before, after = pair_bytes(12)
    first = upload(alice, before, after, name="first", tags="a")
    assert first.status_code == 201, first.content
    files = stored_files(media_root)
    again = upload(alice, before, after, name="again", tags="b")
    assert again.status_code == 200, again.content
    assert again.json() == first.json()  # the existing pair, unchanged
    assert Pair.objects.filter(owner__username="alice").count() == 1
    assert stored_files(media_root) == files
    # Another editor's identical upload is theirs alone.
    theirs = upload(bob, before, after)
    assert theirs.status_code == 201 and theirs.json()["id"] != first.json()["id"]


def test_identical_uploads_racing_store_one_pair(alice, media_root):
    """Both passed the early duplicate check; the second to reach the database gets the first's pair."""
    from django.contrib.auth import get_user_model

    from personalize.images import inspect_bytes
    from personalize.pairs import prepare_pair, store_pair

    owner = get_user_model().objects.get(username="alice")
    before, after = pair_bytes(13)
    prepared = [prepare_pair(inspect_bytes("before", before), inspect_bytes("after", after)) for _ in "ab"]
    first, created = store_pair(owner, prepared[0], name="first")
    files = stored_files(media_root)
    second, second_created = store_pair(owner, prepared[1], name="second")
    assert created and not second_created and second.pk == first.pk
    assert Pair.objects.count() == 1 and stored_files(media_root) == files


def test_bulk_zip_skips_pairs_already_uploaded(alice):
    before, after = pair_bytes(14)
    existing = upload(alice, before, after).json()
    other_before, other_after = pair_bytes(15)
    entries = {
        "before/old.jpg": before,
        "after/old.jpg": after,
        "before/new.jpg": other_before,
        "after/new.jpg": other_after,
        "before/new-copy.jpg": other_before,
        "after/new-copy.jpg": other_after,
    }
    body = bulk_import(alice, entries)
    assert [p["name"] for p in body["stored"]] == ["new"]
    reasons = {item["name"]: item["reason"] for item in body["skipped"]}
    assert reasons["old"] == f"already uploaded as pair {existing['id']}"
    assert reasons["new-copy"] == f"already uploaded as pair {body['stored'][0]['id']}"
    assert Pair.objects.count() == 2


@pytest.mark.parametrize("size", [(63, 120), (200, 40)])
def test_photos_under_the_minimum_size_are_refused(alice, media_root, size):
    width, height = size
    image = crop(photo("coffee"), 16, size=200)[:height, :width]
    response = upload(alice, encode(image), encode(warm_and_bright(image)))
    assert response.status_code == 400, response.content
    assert response.json()["before"] == [
        f"the image is {width}x{height}; its shorter side must be at least 64 pixels"
    ]
    assert Pair.objects.count() == 0 and stored_files(media_root) == []
    small_export = np.asarray(Image.fromarray(crop(photo("coffee"), 16, size=200)).resize((60, 60)))
    response = upload(alice, encode(crop(photo("coffee"), 16, size=200)), encode(small_export))
    assert response.status_code == 400 and "at least 64 pixels" in response.json()["after"][0]
    square = crop(photo("coffee"), 17, size=64)
    assert upload(alice, encode(square), encode(warm_and_bright(square))).status_code == 201


def _straightened_crop(image: np.ndarray, angle: float, area: float, export: float):
    """An editor's after: the frame turned by `angle` degrees about the photo's centre, `area` of it,
    exported at `export` of its resolution. Returns (after, frame corners in the before's pixels)."""
    import cv2

    height, width = image.shape[:2]
    w, h = width * area**0.5, height * area**0.5
    turn = cv2.getRotationMatrix2D((0, 0), -angle, 1.0)[:, :2]  # clockwise on screen, y down
    centre = np.array([width / 2, height / 2])
    frame_to_before = np.hstack([turn, (centre - turn @ [w / 2, h / 2])[:, None]])
    out = (round(w * export), round(h * export))
    to_index = frame_to_before @ np.diag([w / out[0], h / out[1], 1.0])
    to_index[:, 2] += to_index[:, :2] @ [0.5, 0.5] - 0.5
    after = cv2.warpAffine(image, to_index, out, flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
    corners = np.array([[0, 0, 1], [w, 0, 1], [w, h, 1], [0, h, 1]]) @ frame_to_before.T
    return after, corners


def test_cropped_and_straightened_after_is_aligned_and_reported(alice, media_root):
    from rlcore.align import Alignment

    before = photo("coffee")  # 600x400
    after, corners = _straightened_crop(before, angle=4.0, area=0.6, export=0.7)
    response = upload(alice, encode(before, quality=95), encode(warm_and_bright(after), quality=85))
    assert response.status_code == 201, response.content
    body = response.json()
    alignment = body["alignment"]
    assert set(alignment) == {"identity", "scale", "rotation_deg", "crop"} and not alignment["identity"]
    assert alignment["rotation_deg"] == pytest.approx(4.0, abs=0.3)
    assert alignment["scale"] == pytest.approx(0.7, rel=0.02)
    x, y, w, h = alignment["crop"]
    assert w * h / (600 * 400) == pytest.approx(0.6, rel=0.03)
    assert (x + w / 2, y + h / 2) == pytest.approx((300, 200), abs=3)
    pair = Pair.objects.get()
    found = Alignment.from_json(pair.alignment, (600, 400), tuple(body["after_size"]))
    assert np.abs(found.corners() - corners).max() < 0.01 * 600
    # The stored before thumbnail is the region the after shows, not the whole photo.
    stored = np.asarray(Image.open(pair.before_thumb.path), dtype=np.float32)
    region = np.asarray(Image.fromarray(after).resize((64, 64), Image.Resampling.BOX), dtype=np.float32)
    whole = np.asarray(Image.fromarray(before).resize((64, 64), Image.Resampling.BOX), dtype=np.float32)
    assert np.abs(stored - region).mean() < 4 < np.abs(stored - whole).mean()
    # What the model sees of the photo is the whole before, kept beside it; training reads both.
    view = np.asarray(Image.open(pair.view_thumb.path), dtype=np.float32)
    assert np.abs(view - whole).mean() < 2
    thumbs = pair_thumbnails(pair)
    assert np.array_equal(thumbs.before, stored) and np.array_equal(thumbs.view, view)
    # The same alignment when the pair is read back.
    assert alice.get(f"/api/v1/pairs/{body['id']}").json()["alignment"] == alignment


def test_crop_with_another_aspect_ratio_is_accepted(alice):
    image = crop(photo("coffee"), 5, size=200)
    response = upload(alice, encode(image), encode(warm_and_bright(image[:, :150])))
    assert response.status_code == 201, response.content
    alignment = response.json()["alignment"]
    assert alignment["crop"] == [
        pytest.approx(0, abs=2),
        pytest.approx(0, abs=2),
        pytest.approx(150, abs=2),
        pytest.approx(200, abs=2),
    ]
    assert alignment["rotation_deg"] == pytest.approx(0, abs=0.2)


def test_whole_photo_export_is_the_identity(alice):
    response = upload(alice, *pair_bytes(3))
    assert response.status_code == 201, response.content
    assert response.json()["alignment"] == {
        "identity": True,
        "scale": 1.0,
        "rotation_deg": 0.0,
        "crop": [0, 0, 160, 160],
    }
    assert not Pair.objects.get().view_thumb, "the before thumbnail is the whole photo: no view kept"
    # Pairs stored before alignment existed (an empty alignment) read as the identity.
    Pair.objects.update(alignment={})
    assert alice.get("/api/v1/pairs").json()["results"][0]["alignment"]["identity"] is True


MISMATCHED = {
    "another photo": (
        lambda: (photo("coffee"), warm_and_bright(photo("chelsea"))),
        "the after 'a.jpg' does not show the same photo as the before 'b.jpg'",
    ),
    "mirrored": (lambda: (photo("astronaut"), warm_and_bright(photo("astronaut"))[:, ::-1]), "mirror image"),
    "crop too small": (
        lambda: (photo("coffee"), warm_and_bright(photo("coffee")[100:260, 200:440])),
        "the after 'a.jpg' shows 16% of the area of the before 'b.jpg'; crops down to 25% are accepted",
    ),
    "blank after": (lambda: (photo("coffee"), np.full((400, 600, 3), 240, np.uint8)), "blank"),
}


@pytest.mark.parametrize("case", MISMATCHED)
def test_mismatched_pair_is_refused_and_nothing_is_stored(alice, media_root, case):
    make, reason = MISMATCHED[case]
    before, after = make()
    response = upload(alice, encode(before, quality=92), encode(np.ascontiguousarray(after), quality=90))
    assert response.status_code == 400, response.content
    assert list(response.json()) == ["after"]
    assert reason in response.json()["after"][0]
    assert Pair.objects.count() == 0 and stored_files(media_root) == []


def test_bulk_zip_skips_a_mismatched_pair_with_the_reason(alice):
    good_before, good_after = pair_bytes(31)
    entries = {
        "before/good.jpg": good_before,
        "after/good.jpg": good_after,
        "before/wrong.jpg": encode(photo("coffee")),
        "after/wrong.jpg": encode(warm_and_bright(photo("rocket"))),
    }
    body = bulk_import(alice, entries)
    assert [p["name"] for p in body["stored"]] == ["good"]
    (skipped,) = body["skipped"]
    assert skipped["name"] == "wrong"
    assert skipped["reason"].startswith("after: the after does not show the same photo as the before")
    assert Pair.objects.count() == 1


def test_smaller_export_with_same_aspect_is_accepted(alice):
    image = crop(photo("coffee"), 6, size=200)
    small = np.asarray(Image.fromarray(warm_and_bright(image)).resize((100, 100)))
    assert upload(alice, encode(image), encode(small)).status_code == 201


def sixteen_bit_png(image: np.ndarray) -> bytes:
    grey16 = (image.mean(axis=2) * 257).astype(np.uint16)
    return encode(grey16, "PNG")


CONVERTED_UPLOADS = {
    "16-bit PNG": lambda img: sixteen_bit_png(img),
    "CMYK JPEG": lambda img: _save(Image.fromarray(img).convert("CMYK"), "JPEG"),
    "greyscale": lambda img: encode(img.mean(axis=2).astype(np.uint8), "PNG"),
    "alpha": lambda img: _save(Image.fromarray(img).convert("RGBA"), "PNG"),
}


def _save(image: Image.Image, format: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("case", CONVERTED_UPLOADS)
def test_unusual_but_valid_photos_are_converted_to_srgb(alice, case):
    image = crop(photo("astronaut"), 7)
    response = upload(alice, CONVERTED_UPLOADS[case](image), encode(warm_and_bright(image)))
    assert response.status_code == 201, response.content
    thumb = np.asarray(Image.open(Pair.objects.get().before_thumb.path))
    assert thumb.shape == (64, 64, 3) and thumb.dtype == np.uint8
    assert abs(float(thumb.mean()) - float(crop(photo("astronaut"), 7).mean())) < 20


def make_zip(entries: dict[str, bytes]) -> SimpleUploadedFile:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return SimpleUploadedFile("pairs.zip", buffer.getvalue(), content_type="application/zip")


def bulk_import(client, entries: dict[str, bytes], **fields) -> dict:
    """POST a zip (202), import it here as a worker would, and return the import as its URL then shows it."""
    from workers.imports import run_import

    response = client.post("/api/v1/pairs/bulk", {"file": make_zip(entries), **fields}, format="multipart")
    assert response.status_code == 202, response.content
    assert run_import(response.json()["id"]) == "succeeded"
    return client.get(response["Location"]).json()


def test_bulk_zip(alice):
    entries = {}
    for i in range(3):
        before, after = pair_bytes(10 + i)
        entries[f"shoot/before/IMG_{i}.jpg"] = before
        entries[f"shoot/after/img_{i}.JPG"] = after
    entries["shoot/before/lonely.jpg"] = pair_bytes(20)[0]
    entries["shoot/before/broken.jpg"] = b"garbage"
    entries["shoot/after/broken.jpg"] = pair_bytes(21)[1]
    body = bulk_import(alice, entries, tags="wedding")
    assert sorted(p["name"] for p in body["stored"]) == ["img_0", "img_1", "img_2"]
    reasons = {item["name"]: item["reason"] for item in body["skipped"]}
    assert "no after/ file" in reasons["shoot/before/lonely.jpg"]
    assert "not a readable image" in reasons["broken"]
    assert Pair.objects.filter(tags__name="wedding").count() == 3


def test_bulk_zip_with_parent_path_is_refused_whole(alice, media_root):
    before, after = pair_bytes(30)
    entries = {"before/a.jpg": before, "after/a.jpg": after, "../evil/before/b.jpg": before}
    response = alice.post("/api/v1/pairs/bulk", {"file": make_zip(entries)}, format="multipart")
    assert response.status_code == 400
    assert "unsafe path" in response.json()["file"][0]
    assert Pair.objects.count() == 0 and stored_files(media_root) == []


def test_bulk_not_a_zip(alice):
    response = alice.post(
        "/api/v1/pairs/bulk", {"file": SimpleUploadedFile("x.zip", b"nope")}, format="multipart"
    )
    assert response.status_code == 400 and "zip" in response.json()["file"][0]


# Offsets of fields in a zip entry's local header and in its central directory record, and their format.
ZIP_FIELDS = {
    "flags": (6, 8, "<H"),
    "method": (8, 10, "<H"),
    "crc": (14, 16, "<I"),
    "compressed_size": (18, 20, "<I"),
    "size": (22, 24, "<I"),
}


def forged_zip(entries: dict[str, bytes], victim: str, compression=zipfile.ZIP_STORED, **fields) -> bytes:
    """A zip whose entry `victim` has header fields overwritten, in its local header and central record."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    data = bytearray(buffer.getvalue())
    local = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo(victim).header_offset
    central = data.index(b"PK\x01\x02")
    while data[central + 46 : central + 46 + len(victim)] != victim.encode():
        central = data.index(b"PK\x01\x02", central + 4)
    for field, value in fields.items():
        local_offset, central_offset, fmt = ZIP_FIELDS[field]
        struct.pack_into(fmt, data, local + local_offset, value)
        struct.pack_into(fmt, data, central + central_offset, value)
    return bytes(data)


def pair_entries(index: int) -> dict[str, bytes]:
    before, after = pair_bytes(index)
    return {"before/a.jpg": before, "after/a.jpg": after}


MALFORMED_ZIPS = {
    "bad CRC": (lambda e: forged_zip(e, "after/a.jpg", crc=12345), "damaged"),
    "size forged smaller": (lambda e: forged_zip(e, "after/a.jpg", size=100), "damaged"),
    "size forged larger": (
        lambda e: forged_zip(e, "after/a.jpg", size=len(e["after/a.jpg"]) + 1000),
        "damaged",
    ),
    "deflate size forged": (
        lambda e: forged_zip(e, "after/a.jpg", zipfile.ZIP_DEFLATED, size=len(e["after/a.jpg"]) * 3),
        "damaged",
    ),
    "compressed size forged smaller": (
        lambda e: forged_zip(e, "after/a.jpg", compressed_size=100),
        "damaged",
    ),
    "encrypted entry": (lambda e: forged_zip(e, "after/a.jpg", flags=0x1), "encrypted"),
    "unknown compression method": (
        lambda e: forged_zip(e, "after/a.jpg", method=98),
        "compression method 98",
    ),
}


@pytest.mark.parametrize("case", MALFORMED_ZIPS)
def test_malformed_zip_is_refused_whole_with_the_reason(alice, media_root, case):
    make, reason = MALFORMED_ZIPS[case]
    entries = {**pair_entries(40), "before/b.jpg": pair_bytes(41)[0], "after/b.jpg": pair_bytes(41)[1]}
    zip_file = SimpleUploadedFile("pairs.zip", make(entries), content_type="application/zip")
    response = alice.post("/api/v1/pairs/bulk", {"file": zip_file}, format="multipart")
    assert response.status_code == 400, response.content
    message = response.json()["file"][0]
    assert reason in message and "after/a.jpg" in message and "nothing was stored" in message
    assert Pair.objects.count() == 0 and stored_files(media_root) == []


def add_pairs(client, count: int, start: int = 100, tags: str = ""):
    for i in range(count):
        assert upload(client, *pair_bytes(start + i), name=f"p{i}", tags=tags).status_code == 201


def test_job_needs_minimum_pairs(alice, settings):
    settings.MIN_PAIRS_FOR_TRAINING = 3
    add_pairs(alice, 2)
    response = alice.post("/api/v1/jobs", {"seconds": 5}, format="json")
    assert response.status_code == 400
    assert response.json()["required"] == 3 and response.json()["available"] == 2
    assert "at least 3 pairs" in response.json()["detail"]


def test_job_create_conflict_cancel_and_events(alice, settings):
    settings.MIN_PAIRS_FOR_TRAINING = 2
    add_pairs(alice, 2, tags="set-a")
    created = alice.post("/api/v1/jobs", {"seconds": 5, "tag": "set-a", "seed": 3}, format="json")
    assert created.status_code == 201, created.content
    job = created.json()
    assert job["status"] == "queued" and job["seconds"] == 5 and job["tag"] == "set-a"

    second = alice.post("/api/v1/jobs", {}, format="json")
    assert second.status_code == 409 and second.json()["active_job"] == job["id"]

    cancelled = alice.post(f"/api/v1/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 202 and cancelled.json()["status"] == "cancelled"
    assert alice.post(f"/api/v1/jobs/{job['id']}/cancel").status_code == 409
    kinds = [event["kind"] for event in alice.get(f"/api/v1/jobs/{job['id']}/events").json()]
    assert kinds == ["queued", "cancelled"]
    assert alice.post("/api/v1/jobs", {"seconds": 5}, format="json").status_code == 201


@pytest.mark.django_db(transaction=True)  # the message is published when the job's transaction commits
def test_job_is_created_at_once_while_the_broker_is_down(alice, settings, monkeypatch):
    """Redis down: the request must not wait on the broker or the result backend; the sweeper sends later."""
    from celery.backends.redis import RedisBackend

    from personalize.devstack import free_port
    from tests.conftest import broker
    from workers import app
    from workers.training import sweep_stale_jobs

    settings.MIN_PAIRS_FOR_TRAINING = 1
    add_pairs(alice, 1)
    closed = f"redis://127.0.0.1:{free_port()}/0"
    with broker(closed), monkeypatch.context() as patched:
        patched.setattr(type(app), "backend", property(lambda _: RedisBackend(app=app, url=closed)))
        started = time.perf_counter()
        response = alice.post("/api/v1/jobs", {"seconds": 5}, format="json")
        elapsed = time.perf_counter() - started
    assert response.status_code == 201, response.content
    assert response.json()["status"] == "queued"
    assert elapsed < 3, elapsed
    # The broker is back (this test's Redis): the sweeper's next pass sends the message.
    job_id = response.json()["id"]
    queue = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    waiting = queue.llen("training")
    assert sweep_stale_jobs()["resent"] == [job_id]
    assert queue.llen("training") == waiting + 1
    message = json.loads(queue.lpop("training"))  # the newest, ours: not left for another test's worker
    assert message["headers"]["argsrepr"] == f"({job_id},)"


def test_job_input_validation(alice):
    response = alice.post("/api/v1/jobs", {"seconds": -1, "face_weight": 99}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == {"seconds", "face_weight"}


def test_predict_with_base_model_json_and_xmp(alice):
    image = encode(crop(photo("chelsea"), 8))
    response = alice.post(
        "/api/v1/predict", {"image": SimpleUploadedFile("x.jpg", image)}, format="multipart"
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["model"]["kind"] == "base" and body["model"]["id"] is None
    assert list(body["adjustments"]) == list(ADJUSTMENTS)
    assert all(-100 <= v <= 100 and isinstance(v, int) for v in body["adjustments"].values())

    zero = alice.post(
        "/api/v1/predict?strength=0", {"image": SimpleUploadedFile("x.jpg", image)}, format="multipart"
    ).json()
    assert set(zero["adjustments"].values()) == {0}

    xmp = alice.post(
        "/api/v1/predict", {"image": SimpleUploadedFile("x.jpg", image), "format": "xmp"}, format="multipart"
    )
    assert xmp.status_code == 200 and xmp["Content-Type"].startswith("application/rdf+xml")
    ET.fromstring(xmp.content)  # well-formed XML

    bad = alice.post(
        "/api/v1/predict", {"image": SimpleUploadedFile("x.jpg", image), "strength": 3}, format="multipart"
    )
    assert bad.status_code == 400 and "strength" in bad.json()


def test_render_with_explicit_adjustments(alice):
    image = crop(photo("coffee"), 9, size=200)
    response = alice.post(
        "/api/v1/render",
        {
            "image": SimpleUploadedFile("x.png", encode(image, "PNG")),
            "adjustments": json.dumps({"exposure": 50}),
            "max_size": 100,
        },
        format="multipart",
    )
    assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
    rendered = np.asarray(Image.open(io.BytesIO(response.content)))
    assert rendered.shape == (100, 100, 3)
    assert rendered.mean() > np.asarray(Image.fromarray(image).resize((100, 100))).mean() + 5

    bad = alice.post(
        "/api/v1/render",
        {"image": SimpleUploadedFile("x.png", encode(image, "PNG")), "adjustments": '{"sharpness": 5}'},
        format="multipart",
    )
    assert bad.status_code == 400 and "unknown sliders: sharpness" in bad.json()["adjustments"][0]


def test_isolation_every_endpoint_answers_404_for_another_editors_ids(alice, bob, settings):
    from tests.test_training import publish_fake_model

    settings.MIN_PAIRS_FOR_TRAINING = 1
    add_pairs(alice, 1)
    pair_id = Pair.objects.get().pk
    job_id = alice.post("/api/v1/jobs", {"seconds": 5}, format="json").json()["id"]
    model_id = publish_fake_model(TrainingJob.objects.get(pk=job_id)).pk
    missing = 10**9
    for object_id in (pair_id, missing):
        assert bob.get(f"/api/v1/pairs/{object_id}").status_code == 404
        assert bob.delete(f"/api/v1/pairs/{object_id}").status_code == 404
    for object_id in (job_id, missing):
        assert bob.get(f"/api/v1/jobs/{object_id}").status_code == 404
        assert bob.post(f"/api/v1/jobs/{object_id}/cancel").status_code == 404
        assert bob.get(f"/api/v1/jobs/{object_id}/events").status_code == 404
    for object_id in (model_id, missing):
        assert bob.get(f"/api/v1/models/{object_id}").status_code == 404
        assert bob.post(f"/api/v1/models/{object_id}/activate").status_code == 404
        assert bob.get(f"/api/v1/models/{object_id}/download").status_code == 404
    assert bob.get("/api/v1/pairs").json()["count"] == 0
    assert bob.get("/api/v1/jobs").json()["count"] == 0
    assert bob.get("/api/v1/models").json()["count"] == 0
    assert Pair.objects.filter(pk=pair_id).exists()
    assert not JobEvent.objects.filter(job_id=job_id, kind="cancel_requested").exists()
    # and alice herself sees them
    assert alice.get(f"/api/v1/models/{model_id}").status_code == 200
    assert alice.get(f"/api/v1/models/{model_id}/download").status_code == 200


def test_a_model_file_missing_from_storage_answers_404_in_words(alice, settings, caplog):
    from django.core.files.storage import default_storage

    from tests.test_training import publish_fake_model

    settings.MIN_PAIRS_FOR_TRAINING = 1
    add_pairs(alice, 1)
    job_id = alice.post("/api/v1/jobs", {"seconds": 5}, format="json").json()["id"]
    model = publish_fake_model(TrainingJob.objects.get(pk=job_id))
    default_storage.delete(model.file)  # deleted out of band
    response = alice.get(f"/api/v1/models/{model.pk}/download")
    assert response.status_code == 404
    assert response.json() == {"detail": "the model file is missing from storage"}
    assert any(r.levelname == "WARNING" and model.file in r.getMessage() for r in caplog.records)


def test_an_active_model_whose_file_is_missing_answers_503_in_words_not_the_base(alice, settings, caplog):
    """A client asked for this editor's style: the base model's sliders would be a silent wrong answer."""
    from django.contrib.auth.models import User
    from django.core.files.storage import default_storage

    from personalize import inference
    from personalize.models_ops import activate_model
    from tests.test_training import publish_fake_model

    settings.MIN_PAIRS_FOR_TRAINING = 1
    add_pairs(alice, 1)
    job_id = alice.post("/api/v1/jobs", {"seconds": 5}, format="json").json()["id"]
    model = publish_fake_model(TrainingJob.objects.get(pk=job_id))
    activate_model(User.objects.get(username="alice"), model)
    default_storage.delete(model.file)  # deleted out of band
    inference.cache.clear()
    image = encode(crop(photo("chelsea"), 8))
    single = alice.post("/api/v1/predict", {"image": SimpleUploadedFile("x.jpg", image)}, format="multipart")
    preview = io.BytesIO()
    Image.fromarray(crop(photo("chelsea"), 8)).resize((64, 64)).save(preview, format="PNG")
    batch = alice.post(
        "/api/v1/predict/batch",
        {"previews": [SimpleUploadedFile("x.png", preview.getvalue())]},
        format="multipart",
    )
    for response in (single, batch):
        assert response.status_code == 503, response.content
        assert "missing from storage" in response.json()["detail"]
    assert any(r.levelname == "WARNING" and model.file in r.getMessage() for r in caplog.records)


def test_upload_throttle(settings, alice):
    from django.core.cache import cache

    cache.clear()
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**rates, "uploads": "2/minute"},
    }
    codes = [upload(alice, *pair_bytes(200 + i)).status_code for i in range(3)]
    cache.clear()
    assert codes == [201, 201, 429]


def login_codes(settings, forwarded_for: list[str]) -> list[int]:
    """Wrong-password logins from one client, each claiming the given X-Forwarded-For, under 3/minute."""
    from django.core.cache import cache

    create_or_get_editor("erin", password="erin-password-123")
    rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**rates, "auth": "3/minute"},
    }
    cache.clear()
    client = APIClient(REMOTE_ADDR="10.0.0.2")
    codes = [
        client.post(
            "/api/v1/auth/token", {"username": "erin", "password": "guess"}, HTTP_X_FORWARDED_FOR=xff
        ).status_code
        for xff in forwarded_for
    ]
    cache.clear()
    return codes


def test_login_throttle_ignores_forwarded_for_without_proxies(settings):
    """NUM_PROXIES=0 (the default): a client choosing a new X-Forwarded-For per guess is still throttled."""
    assert login_codes(settings, [f"203.0.113.{i}" for i in range(5)]) == [400, 400, 400, 429, 429]


def test_login_throttle_behind_one_proxy_uses_the_last_forwarded_address(settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "NUM_PROXIES": 1}
    # The proxy appends the address it saw; what the client wrote before it is not trusted.
    spoofed = [f"203.0.113.{i}, 198.51.100.7" for i in range(5)]
    assert login_codes(settings, spoofed) == [400, 400, 400, 429, 429]
    distinct = [f"198.51.100.{i}" for i in range(5)]
    assert login_codes(settings, distinct) == [400] * 5


def test_num_proxies_comes_from_the_environment():
    code = "import django; django.setup(); from django.conf import settings as s; print(s.REST_FRAMEWORK['NUM_PROXIES'])"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "personalize.settings", "NUM_PROXIES": "2"}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.split()[-1] == "2"


def test_openapi_schema_validates():
    from django.core.management import call_command

    out = io.StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = out.getvalue()
    for path in ("/api/v1/pairs", "/api/v1/jobs/{id}/cancel", "/api/v1/predict", "/api/v1/render"):
        assert path in schema


def test_api_docs_load_swagger_ui_from_this_server(client, settings, tmp_path):
    """/api/docs/ works without internet: Swagger UI's files are served by the app, not a CDN."""
    from django.core.management import call_command
    from django.test import Client

    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    urls = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)["']""", html)
    urls += re.findall(r"""["']((?:https?:)?//[^"']+)["']""", html)
    assert urls and not [url for url in urls if "//" in url], urls
    assets = [url for url in urls if url.startswith("/" + settings.STATIC_URL.lstrip("/"))]
    assert any(url.endswith("swagger-ui-bundle.js") for url in assets), urls

    # Served as in production: collected into STATIC_ROOT, answered by WhiteNoise.
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", "--noinput", verbosity=0)
    fresh = Client()  # its middleware, WhiteNoise included, reads the new STATIC_ROOT
    for url in assets:
        response = fresh.get(url)
        assert response.status_code == 200, url
        assert b"".join(response.streaming_content if response.streaming else [response.content])


def test_oversized_request_is_refused_before_reading_the_body(alice, settings):
    settings.MAX_UPLOAD_BYTES = 1000
    astronaut = photo("astronaut")
    before, after = encode(astronaut, quality=95), encode(warm_and_bright(astronaut), quality=95)
    assert len(before) + len(after) > 3 * 1000 + 64 * 1024
    response = upload(alice, before, after)
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]
    assert Pair.objects.count() == 0


def test_file_over_the_upload_limit_is_refused(alice, settings):
    before, after = pair_bytes(301)
    settings.MAX_UPLOAD_BYTES = max(len(before), len(after)) - 1
    response = upload(alice, before, after)
    assert response.status_code == 400
    assert "limit" in " ".join(response.json().get("before", []) + response.json().get("after", []))
