"""POST /api/v1/predict/batch: previews decoded by the client, many per request, one model, one log write."""

import io
from pathlib import Path

import numpy as np
import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from PIL import Image

from personalize import inference
from personalize.client.previews import NoPreview, PreviewError, make_preview
from personalize.images import UploadedPhoto, inspect_bytes
from personalize.models import Prediction, TrainingJob
from rlcore.editor import ADJUSTMENTS
from rlcore.imageio import thumbnail
from tests.icc import rgb_profile
from tests.photos import crop, encode, photo
from tests.test_api import api_client

pytestmark = pytest.mark.django_db
BATCH = "/api/v1/predict/batch"


@pytest.fixture
def alice():
    return api_client("alice")


@pytest.fixture
def bob():
    return api_client("bob")


@pytest.fixture
def throttle_rate(settings):
    def set_rate(rate: str) -> None:
        rates = settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]
        settings.REST_FRAMEWORK = {
            **settings.REST_FRAMEWORK,
            "DEFAULT_THROTTLE_RATES": {**rates, "predictions": rate},
        }

    cache.clear()
    yield set_rate
    cache.clear()


def jpeg_with(image: np.ndarray, orientation: int = 1, icc: bytes | None = None, quality=92) -> bytes:
    exif = Image.Exif()
    if orientation != 1:
        exif[0x0112] = orientation
    options = {"exif": exif.tobytes(), "quality": quality}
    if icc:
        options["icc_profile"] = icc
    return encode(image, **options)


def big(name: str, size=(1600, 1200)) -> np.ndarray:
    """A photo upscaled so that draft-mode decoding (1/4 or 1/8 scale) is really exercised."""
    return np.asarray(Image.fromarray(photo(name)).resize(size, Image.Resampling.BICUBIC))


def preview_of(tmp_path: Path, name: str, data: bytes) -> bytes:
    path = tmp_path / name
    path.write_bytes(data)
    return make_preview(path)[0]


def post(client, previews: list[tuple[str, bytes]], **fields):
    files = [SimpleUploadedFile(name, data) for name, data in previews]
    return client.post(BATCH, {"previews": files, **fields}, format="multipart")


# --- the client's preview is the server's thumbnail ---------------------------------------------------------


@pytest.mark.parametrize(
    "name, data",
    [
        ("plain.jpg", lambda: jpeg_with(big("astronaut"))),
        ("rotated.jpg", lambda: jpeg_with(big("coffee", (1200, 900)), orientation=6)),
        ("adobe-rgb.jpg", lambda: jpeg_with(big("chelsea"), icc=rgb_profile())),
        ("small.png", lambda: encode(crop(photo("rocket"), 3, size=120), "PNG")),
        ("wide.webp", lambda: encode(big("astronaut", (900, 300)), "WEBP", quality=90)),
    ],
)
def test_client_preview_equals_the_servers_thumbnail_of_the_full_file(tmp_path, name, data):
    data = data()
    preview = np.asarray(Image.open(io.BytesIO(preview_of(tmp_path, name, data))))
    uploaded: UploadedPhoto = inspect_bytes("image", data)
    server = thumbnail(uploaded.decode(max_side=inference.PREDICTION_SIDE))
    assert preview.shape == (64, 64, 3)
    assert np.array_equal(preview, server)


def test_batch_answers_what_single_predictions_answer(alice, tmp_path):
    files = {
        "a.jpg": jpeg_with(big("astronaut")),
        "b.jpg": jpeg_with(big("coffee", (1200, 900)), orientation=8),
        "c.jpg": jpeg_with(big("chelsea"), icc=rgb_profile()),
    }
    singles = [
        alice.post(
            "/api/v1/predict?strength=0.7", {"image": SimpleUploadedFile(n, d)}, format="multipart"
        ).json()["adjustments"]
        for n, d in files.items()
    ]
    previews = [(name, preview_of(tmp_path, name, data)) for name, data in files.items()]
    assert all(len(p) < 20_000 for _, p in previews)
    response = post(alice, previews, strength="0.7")
    assert response.status_code == 200, response.content
    body = response.json()
    assert [r["name"] for r in body["results"]] == list(files)
    assert [r["adjustments"] for r in body["results"]] == singles
    assert body["model"] == {"id": None, "version": body["model"]["version"], "kind": "base"}


# --- the endpoint ---------------------------------------------------------------------------------------------


def test_get_names_the_serving_model_and_the_limits(alice):
    body = alice.get(BATCH).json()
    assert body["model"]["kind"] == "base"
    assert body == {
        "model": body["model"],
        "max_previews": inference.BATCH_MAX_PREVIEWS,
        "preview_size": 64,
        "max_preview_side": 256,
    }


def test_a_corrupt_preview_answers_its_own_error_and_the_rest_are_served(alice, tmp_path):
    good = preview_of(tmp_path, "good.jpg", jpeg_with(big("astronaut")))
    jpeg_preview = encode(crop(photo("coffee"), 1, size=200), quality=85)  # a 200 px JPEG preview
    previews = [
        ("good.png", good),
        ("truncated.jpg", jpeg_preview[: len(jpeg_preview) // 2]),
        ("text.jpg", b"this is not an image"),
        ("empty.jpg", b""),
        ("full-size.jpg", jpeg_with(big("chelsea", (800, 600)))),
        ("gif.gif", encode(crop(photo("coffee"), 2, size=32), "GIF")),
        ("jpeg-preview.jpg", jpeg_preview),
    ]
    response = post(alice, previews, format="xmp")
    assert response.status_code == 200, response.content
    results = response.json()["results"]
    assert [r["name"] for r in results] == [name for name, _ in previews]
    served = [r for r in results if "adjustments" in r]
    assert [r["name"] for r in served] == ["good.png", "jpeg-preview.jpg"]
    assert all(list(r["adjustments"]) == list(ADJUSTMENTS) and "crs:Exposure2012" in r["xmp"] for r in served)
    errors = {r["name"]: r["error"] for r in results if "error" in r}
    assert "damaged or incomplete" in errors["truncated.jpg"]
    assert "not a readable image" in errors["text.jpg"]
    assert errors["empty.jpg"] == "the file is empty"
    assert "800x600" in errors["full-size.jpg"] and "/api/v1/predict" in errors["full-size.jpg"]
    assert "GIF previews are not accepted" in errors["gif.gif"]
    assert not any("adjustments" in r for r in results if "error" in r)
    # Only what was served is logged.
    assert Prediction.objects.count() == 2


def test_whole_request_errors_are_400_and_log_nothing(alice, tmp_path):
    good = preview_of(tmp_path, "a.jpg", jpeg_with(big("astronaut")))
    assert post(alice, []).status_code == 400
    too_many = post(alice, [(f"{i}.png", good) for i in range(inference.BATCH_MAX_PREVIEWS + 1)])
    assert too_many.status_code == 400 and "previews" in too_many.json()
    bad_strength = post(alice, [("a.png", good)], strength="3")
    assert bad_strength.status_code == 400 and "strength" in bad_strength.json()
    bad_format = post(alice, [("a.png", good)], format="tiff")
    assert bad_format.status_code == 400 and "format" in bad_format.json()
    wrong_field = alice.post(BATCH, {"image": SimpleUploadedFile("a.png", good)}, format="multipart")
    assert wrong_field.status_code == 400 and "previews" in wrong_field.json()
    assert Prediction.objects.count() == 0
    from rest_framework.test import APIClient

    assert APIClient().post(BATCH, {}, format="multipart").status_code == 401


def test_one_model_lookup_one_forward_pass_one_insert(alice, tmp_path, monkeypatch):
    good = preview_of(tmp_path, "a.jpg", jpeg_with(big("astronaut")))
    post(alice, [("warm-up.png", good)])  # token, session and model cache warm
    calls = []
    model = inference.base_model().model
    original = model.predict_thumbnails
    monkeypatch.setattr(model, "predict_thumbnails", lambda t: calls.append(len(t)) or original(t))
    with CaptureQueriesContext(connection) as queries:
        response = post(alice, [(f"{i}.png", good) for i in range(40)])
    assert response.status_code == 200
    assert calls == [40]
    inserts = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("INSERT")]
    assert len(inserts) == 1 and "personalize_prediction" in inserts[0]
    model_lookups = [q for q in queries.captured_queries if "personalize_personalmodel" in q["sql"]]
    assert len(model_lookups) == 1
    assert Prediction.objects.filter(owner__username="alice").count() == 41


def test_isolation_each_editor_is_served_by_their_own_model_only(alice, bob, tmp_path, settings):
    from tests.test_api import add_pairs
    from tests.test_training import publish_fake_model

    settings.MIN_PAIRS_FOR_TRAINING = 1
    add_pairs(alice, 1)
    job_id = alice.post("/api/v1/jobs", {"seconds": 5}, format="json").json()["id"]
    alice_model = publish_fake_model(TrainingJob.objects.get(pk=job_id))
    good = preview_of(tmp_path, "a.jpg", jpeg_with(big("astronaut")))

    assert alice.get(BATCH).json()["model"]["id"] == alice_model.pk
    mine = post(alice, [("a.png", good)]).json()
    assert mine["model"] == {"id": alice_model.pk, "version": alice_model.version, "kind": "personal"}
    # Bob cannot reach Alice's model, not even by naming it: there is no such parameter to name it with.
    theirs = post(bob, [("a.png", good)], model=str(alice_model.pk)).json()
    assert theirs["model"]["kind"] == "base" and theirs["model"]["id"] is None
    assert bob.get(BATCH).json()["model"]["kind"] == "base"
    assert set(Prediction.objects.filter(owner__username="bob").values_list("model_id", flat=True)) == {None}
    assert set(Prediction.objects.filter(owner__username="alice").values_list("model_id", flat=True)) == {
        alice_model.pk
    }


def test_throttle_counts_photos_not_requests(alice, bob, tmp_path, throttle_rate):
    throttle_rate("10/minute")
    good = preview_of(tmp_path, "a.jpg", jpeg_with(big("astronaut")))
    assert post(alice, [(f"{i}.png", good) for i in range(6)]).status_code == 200
    refused = post(alice, [(f"{i}.png", good) for i in range(5)])  # 6 + 5 > 10: all refused, none served
    assert refused.status_code == 429 and 0 < int(refused["Retry-After"]) <= 60
    assert Prediction.objects.count() == 6
    assert post(alice, [(f"{i}.png", good) for i in range(4)]).status_code == 200  # exactly 10
    # Single predictions share the budget.
    image = SimpleUploadedFile("x.jpg", jpeg_with(crop(photo("coffee"), 1, size=200)))
    assert alice.post("/api/v1/predict", {"image": image}, format="multipart").status_code == 429
    # Another editor has a budget of their own; GET (no prediction) is not counted.
    assert post(bob, [(f"{i}.png", good) for i in range(10)]).status_code == 200
    assert alice.get(BATCH).status_code == 200


# --- RAW files ----------------------------------------------------------------------------------------------


def fake_raw(preview: bytes | None, orientation: int = 1) -> bytes:
    """A TIFF-based 'RAW' file: a TIFF header (carrying the orientation), sensor-like noise and maybe a JPEG."""
    header = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.new("L", (8, 8)).save(header, format="TIFF", exif=exif)
    noise = (
        np.random.default_rng(0).integers(0, 255, 50_000, dtype=np.uint8).tobytes().replace(b"\xff", b"\xfe")
    )
    thumb = encode(crop(photo("rocket"), 0, size=100), quality=70)  # the 160x120-ish camera thumbnail
    return header.getvalue() + noise + thumb + noise + (preview or b"") + noise


def test_raw_files_use_their_largest_embedded_jpeg_oriented_as_the_raw_says(tmp_path):
    picture = big("coffee", (1200, 900))
    raw = tmp_path / "IMG_1.CR2"
    raw.write_bytes(fake_raw(encode(picture, quality=90), orientation=6))
    got = np.asarray(Image.open(io.BytesIO(make_preview(raw)[0])))
    upright = jpeg_with(picture, orientation=6, quality=90)  # the same pixels, with the orientation
    expected = thumbnail(inspect_bytes("image", upright).decode(max_side=inference.PREDICTION_SIDE))
    assert np.array_equal(got, expected)


def test_raw_without_a_preview_and_unreadable_files_raise_with_reasons(tmp_path):
    raw = tmp_path / "IMG_2.NEF"
    raw.write_bytes(fake_raw(None).replace(encode(crop(photo("rocket"), 0, size=100), quality=70), b""))
    with pytest.raises(NoPreview, match="without an embedded JPEG preview"):
        make_preview(raw)
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(jpeg_with(big("astronaut"))[:5000])
    with pytest.raises(PreviewError, match="damaged or incomplete"):
        make_preview(broken)
    text = tmp_path / "notes.jpg"
    text.write_text("hello")
    with pytest.raises(PreviewError, match="not a readable image"):
        make_preview(text)
