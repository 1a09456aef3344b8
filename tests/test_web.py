"""The editors' web app (personalize/web.py) through Django's test client: pages, forms, JSON endpoints, security.

What a real browser does (scripts, drag-and-drop, live progress) is covered in tests/test_browser.py.
"""

import io
import json
import math
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from PIL import Image
from rest_framework.test import APIClient

from personalize.accounts import create_or_get_editor
from personalize.jobs import create_job
from personalize.models import EditorProfile, Pair, PersonalModel, Prediction, TrainingJob
from personalize.pairs import upload_pair
from rlcore.agent import instant_seconds
from rlcore.modelfile import load_model
from tests.photos import encode, pair_bytes, photo
from workers import training
from workers.imports import run_import

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a-long-password-123"


def signed_in(username: str, **client_options) -> Client:
    create_or_get_editor(username, password=PASSWORD)
    client = Client(**client_options)
    assert client.login(username=username, password=PASSWORD)
    return client


@pytest.fixture
def alice(db):
    return signed_in("alice")


@pytest.fixture
def bob(db):
    return signed_in("bob")


def user(username: str):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(username=username)


def add_pairs(owner, count: int, start: int = 0) -> list[Pair]:
    stored = []
    for i in range(count):
        before, after = pair_bytes(start + i)
        pair, _ = upload_pair(
            owner,
            SimpleUploadedFile("b.jpg", before),
            SimpleUploadedFile("a.jpg", after),
            name=f"p{start + i}",
        )
        stored.append(pair)
    return stored


def published_model(owner, pairs: int = 6) -> PersonalModel:
    """A job run in this process for a second (a real, tiny fine-tuning), published as version 1."""
    add_pairs(owner, pairs)
    job = create_job(owner, seconds=0, seed=3)  # the instant model: done in seconds, no RL
    assert training.run_job(job.pk) == "succeeded"
    return PersonalModel.objects.get(job=job)


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]]


# --- signing in, redirects, empty states -------------------------------------------------------------------


def test_root_and_pages_send_anyone_signed_out_to_sign_in(db):
    client = Client()
    assert client.get("/").url == reverse("web:signin")
    for name in ("web:pairs", "web:training", "web:models", "web:results", "web:try"):
        response = client.get(reverse(name))
        assert response.status_code == 302 and response.url.startswith(reverse("web:signin") + "?next=")
    # The pages' scripts get a 401 in words, not a sign-in page to parse.
    response = client.post(reverse("web:pair-upload"))
    assert response.status_code == 401 and "signed out" in response.json()["errors"][0]


def test_sign_in_with_the_editor_account_and_out_again(db):
    create_or_get_editor("erin", password=PASSWORD)
    client = Client()
    response = client.post(reverse("web:signin"), {"username": "erin", "password": "wrong"})
    assert response.status_code == 200
    assert "correct username and password" in response.content.decode()
    response = client.post(reverse("web:signin"), {"username": "erin", "password": PASSWORD})
    assert response.status_code == 302 and response.url == reverse("web:pairs")
    assert client.get("/").url == reverse("web:pairs")
    assert client.post(reverse("web:signout")).url == reverse("web:signin")
    assert client.get(reverse("web:pairs")).status_code == 302


def test_sign_in_counts_against_the_api_login_throttle(db, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "auth": "3/minute"},
    }
    from django.core.cache import cache

    cache.clear()
    create_or_get_editor("erin", password=PASSWORD)
    api = APIClient()
    for _ in range(2):  # two tries through the API's token endpoint...
        assert api.post("/api/v1/auth/token", {"username": "erin", "password": "x"}).status_code == 400
    client = Client()
    assert client.post(reverse("web:signin"), {"username": "erin", "password": "x"}).status_code == 200
    # ... and the fourth, in the browser, is over the shared limit even with the right password.
    response = client.post(reverse("web:signin"), {"username": "erin", "password": PASSWORD})
    assert response.status_code == 429 and "Too many sign-in attempts" in response.content.decode()


def test_empty_states_say_what_to_do(alice, settings):
    settings.MIN_PAIRS_FOR_TRAINING = 10
    page = alice.get(reverse("web:pairs")).content.decode()
    assert "No pairs yet." in page and "at least 10" in page
    page = alice.get(reverse("web:training")).content.decode()
    assert "Upload at least 10 pairs to train." in page and "10 more to go" in page
    assert "No training jobs yet." in page
    assert "No models yet." in alice.get(reverse("web:models")).content.decode()
    assert "No model to show yet." in alice.get(reverse("web:results")).content.decode()
    assert alice.get(reverse("web:try")).status_code == 200


# --- security ----------------------------------------------------------------------------------------------


def test_csrf_is_enforced_on_every_form_and_endpoint(db):
    client = signed_in("carol", enforce_csrf_checks=True)
    pair = add_pairs(user("carol"), 1)[0]
    posts = [
        reverse("web:pair-delete", args=[pair.pk]),
        reverse("web:pair-upload"),
        reverse("web:pair-upload-zip"),
        reverse("web:pairs-match"),
        reverse("web:training-start"),
        reverse("web:model-activate", args=[1]),
        reverse("web:try-predict"),
        reverse("web:try-render"),
        reverse("web:try-xmp"),
        reverse("web:signout"),
    ]
    for url in posts:
        assert client.post(url).status_code == 403, url
    assert Pair.objects.filter(pk=pair.pk).exists()
    # With the token the page carries, the same form works.
    page = client.get(reverse("web:pairs")).content.decode()
    token = page.split('name="csrf-token" content="', 1)[1].split('"', 1)[0]
    response = client.post(reverse("web:pair-delete", args=[pair.pk]), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302 and not Pair.objects.filter(pk=pair.pk).exists()


def test_another_editors_ids_answer_404(alice, bob, settings):
    settings.MIN_PAIRS_FOR_TRAINING = 4
    model = published_model(user("bob"))
    pair = Pair.objects.filter(owner=user("bob")).first()
    job = model.job
    gets = [
        reverse("web:pair-image", args=[pair.pk, "before"]),
        reverse("web:job", args=[job.pk]),
        reverse("web:job-json", args=[job.pk]),
        reverse("web:results") + f"?model={model.pk}",
        reverse("web:result-image", args=[model.pk, pair.pk, "model"]),
        reverse("model-download", args=[model.pk]),
    ]
    for url in gets:
        assert bob.get(url).status_code == 200, url  # the owner sees each one...
        assert alice.get(url).status_code == 404, url  # ... the other editor gets "not found"
    posts = [
        reverse("web:pair-delete", args=[pair.pk]),
        reverse("web:job-cancel", args=[job.pk]),
        reverse("web:model-activate", args=[model.pk]),
    ]
    for url in posts:
        assert alice.post(url).status_code == 404, url
    assert Pair.objects.filter(pk=pair.pk).exists()
    # The 404 page says it in words (tests run with DEBUG off, as in production).
    assert "Not found" in alice.get(reverse("web:job", args=[job.pk])).content.decode()


def test_session_cookies_are_secure_when_debug_is_off(tmp_path):
    code = (
        "from django.conf import settings; import django; django.setup(); "
        "print(settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE, settings.SESSION_COOKIE_HTTPONLY)"
    )
    env = {
        **os.environ,
        "DEBUG": "false",
        "SECRET_KEY": "x" * 50,
        "DJANGO_SETTINGS_MODULE": "personalize.settings",
        "VAR_DIR": str(tmp_path),
    }
    out = subprocess.run([sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True)
    assert out.stdout.split() == ["True", "True", "True"], out.stderr


# --- pairs -------------------------------------------------------------------------------------------------


def test_pairs_grid_tag_filter_pagination_and_delete(alice, media_root, monkeypatch):
    monkeypatch.setattr("personalize.web.PAIRS_PER_PAGE", 2)
    owner = user("alice")
    pairs = add_pairs(owner, 3)
    pairs[0].tags.create(name="portrait")
    page = alice.get(reverse("web:pairs"))
    assert page.context["listing"].paginator.num_pages == 2 and "Page 1 of 2" in page.content.decode()
    assert len(alice.get(reverse("web:pairs") + "?page=2").context["listing"].object_list) == 1
    tagged = alice.get(reverse("web:pairs") + "?tag=portrait").context["listing"]
    assert [p.pk for p in tagged] == [pairs[0].pk]
    assert "No pairs tagged" in alice.get(reverse("web:pairs") + "?tag=nothing").content.decode()

    image = alice.get(reverse("web:pair-image", args=[pairs[1].pk, "before"]))
    assert image.status_code == 200 and image["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(image.content)).size == (160, 160)
    assert alice.get(reverse("web:pair-image", args=[pairs[1].pk, "mask"])).status_code == 404

    response = alice.post(reverse("web:pair-delete", args=[pairs[1].pk]), {"next": "/pairs/?page=2"})
    assert response.url == "/pairs/?page=2"
    assert not Pair.objects.filter(pk=pairs[1].pk).exists()
    assert not list((media_root / "pairs" / str(owner.pk) / str(pairs[1].uid)).glob("*"))
    # A `next` pointing off the site is ignored.
    response = alice.post(reverse("web:pair-delete", args=[pairs[2].pk]), {"next": "https://evil.example/"})
    assert response.url == reverse("web:pairs")


def test_folder_matching_gives_the_zip_rules_reasons(alice):
    names = [
        "shoot/before/IMG_1.jpg",
        "shoot/after/img_1.JPG",
        "shoot/before/IMG_2.jpg",
        "shoot/after/IMG_3.png",
        "shoot/notes.txt",
        "shoot/.DS_Store",
    ]
    response = alice.post(reverse("web:pairs-match"), {"names": names}, content_type="application/json")
    assert response.status_code == 200
    body = response.json()
    assert body["pairs"] == [{"name": "IMG_1", "before": names[0], "after": names[1]}]
    assert {s["name"]: s["reason"] for s in body["skipped"]} == {
        "shoot/notes.txt": "not an image inside before/ or after/",
        "shoot/before/IMG_2.jpg": "no after/ file with this name",
        "shoot/after/IMG_3.png": "no before/ file with this name",
    }
    refused = alice.post(
        reverse("web:pairs-match"), {"names": ["../before/x.jpg"]}, content_type="application/json"
    )
    assert refused.status_code == 400 and "unsafe path" in refused.json()["errors"][0]
    for body in ("nonsense", b"\x80\xff not UTF-8", '["a list"]', '{"names": ["ok.jpg", 3]}'):
        refused = alice.post(reverse("web:pairs-match"), body, content_type="application/json")
        assert refused.status_code == 400, body
        assert refused.json()["errors"] == ['expected JSON {"names": [file paths]}']


def test_upload_gives_the_api_reason_and_stores_nothing_for_a_bad_file(alice, media_root):
    before, after = pair_bytes(0)
    ok = alice.post(
        reverse("web:pair-upload"),
        {
            "before": SimpleUploadedFile("x.jpg", before),
            "after": SimpleUploadedFile("x.jpg", after),
            "name": "x",
        },
    )
    assert ok.status_code == 201 and ok.json()["created"] and ok.json()["pair"]["name"] == "x"
    again = alice.post(
        reverse("web:pair-upload"),
        {"before": SimpleUploadedFile("x.jpg", before), "after": SimpleUploadedFile("x.jpg", after)},
    )
    assert again.status_code == 200 and again.json()["pair"]["id"] == ok.json()["pair"]["id"]

    files_before = sorted(media_root.rglob("*"))
    bad = {
        "before": SimpleUploadedFile("b.jpg", b"not a photo at all"),
        "after": SimpleUploadedFile("a.jpg", after),
    }
    refused = alice.post(reverse("web:pair-upload"), bad)
    assert refused.status_code == 400
    api = APIClient()
    api.force_authenticate(user("alice"))
    api_answer = api.post(
        "/api/v1/pairs",
        {
            "before": SimpleUploadedFile("b.jpg", b"not a photo at all"),
            "after": SimpleUploadedFile("a.jpg", after),
        },
        format="multipart",
    )
    assert refused.json()["errors"] == [f"before: {api_answer.json()['before'][0]}"]
    assert sorted(media_root.rglob("*")) == files_before and Pair.objects.count() == 1


def test_zip_upload_is_imported_in_the_background_and_lists_stored_and_skipped(alice):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for i in range(2):
            before, after = pair_bytes(10 + i)
            archive.writestr(f"before/p{i}.jpg", before)
            archive.writestr(f"after/p{i}.jpg", after)
        archive.writestr("before/lonely.jpg", pair_bytes(20)[0])
    response = alice.post(
        reverse("web:pair-upload-zip"),
        {"file": SimpleUploadedFile("pairs.zip", buffer.getvalue()), "tags": "zip"},
    )
    # Accepted at once; the page follows the import (a worker's work, done here in-process) at `poll`.
    assert response.status_code == 202
    started = response.json()
    assert started["status"] == "queued" and started["total"] == 2 and started["done"] == 0
    assert run_import(started["id"]) == "succeeded"
    body = alice.get(started["poll"]).json()
    assert body["status"] == "succeeded" and body["progress"] == 1.0
    assert sorted(p["name"] for p in body["stored"]) == ["p0", "p1"]
    assert body["skipped"] == [{"name": "before/lonely.jpg", "reason": "no after/ file with this name"}]
    assert Pair.objects.filter(tags__name="zip").count() == 2
    assert signed_in("bob").get(started["poll"]).status_code == 404
    refused = alice.post(reverse("web:pair-upload-zip"), {"file": SimpleUploadedFile("x.zip", b"nope")})
    assert refused.status_code == 400 and refused.json()["errors"][0].startswith("file: not a readable zip")


def test_uploads_share_the_api_throttle(alice, settings):
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {**settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "uploads": "2/hour"},
    }
    from django.core.cache import cache

    cache.clear()
    api = APIClient()
    api.force_authenticate(user("alice"))
    before, after = pair_bytes(0)
    assert api.post("/api/v1/pairs", {"before": SimpleUploadedFile("b.jpg", before), "after": SimpleUploadedFile("a.jpg", after)}, format="multipart").status_code == 201  # fmt: skip
    assert alice.post(reverse("web:pair-upload"), {}).status_code == 400  # counted, though refused
    response = alice.post(reverse("web:pair-upload"), {})
    assert response.status_code == 429 and "too many requests" in response.json()["errors"][0]


# --- training, models, results ------------------------------------------------------------------------------


def test_training_start_refusals_in_words_then_a_job(alice, settings):
    settings.MIN_PAIRS_FOR_TRAINING = 3
    response = alice.post(reverse("web:training-start"), {"seconds": "5"}, follow=True)
    assert messages_of(response) == ["Training needs at least 3 pairs; you have 0. Upload 3 more."]
    assert "for your 0 pairs" not in alice.get(reverse("web:training")).content.decode()
    add_pairs(user("alice"), 3)
    # the instant model's time for these pairs, before a job is started (it grows with the pairs)
    page = alice.get(reverse("web:training")).content.decode()
    assert f"for your 3 pairs about {math.ceil(instant_seconds(3))} s on an idle core" in page
    response = alice.post(reverse("web:training-start"), {"seconds": "999999"}, follow=True)
    assert messages_of(response) == [f"Budget: at most {settings.TRAINING_MAX_SECONDS} seconds"]
    assert not TrainingJob.objects.exists()

    response = alice.post(reverse("web:training-start"), {"seconds": "7", "faces": "on"})
    job = TrainingJob.objects.get()
    assert response.url == reverse("web:job", args=[job.pk])
    assert (job.seconds, job.face_weight, job.status) == (7, 1.0, "queued")
    state = alice.get(reverse("web:job-json", args=[job.pk])).json()
    assert state["status"] == "queued" and state["active"] and state["curve"] == []
    assert [e["kind"] for e in state["events"]] == ["queued"]

    # A second start while one is active goes to the active job, saying why.
    response = alice.post(reverse("web:training-start"), {"seconds": "5"}, follow=True)
    assert response.redirect_chain[-1][0] == reverse("web:job", args=[job.pk])
    assert "already have an active training job" in messages_of(response)[0]

    response = alice.post(reverse("web:job-cancel", args=[job.pk]), follow=True)
    assert messages_of(response) == ["Cancelled before it started."]
    job.refresh_from_db()
    assert job.status == "cancelled"
    response = alice.post(reverse("web:job-cancel", args=[job.pk]), follow=True)
    assert messages_of(response)[0].startswith("Nothing to cancel")


def test_models_page_activate_roll_back_and_download(alice, settings):
    settings.MIN_PAIRS_FOR_TRAINING = 4
    owner = user("alice")
    first = published_model(owner)
    job = create_job(owner, seconds=0, seed=4)
    assert training.run_job(job.pk) == "succeeded"
    second = PersonalModel.objects.get(job=job)
    EditorProfile.objects.filter(user=owner).update(active_model=second)

    page = alice.get(reverse("web:models")).content.decode()
    assert "Roll back to v1" in page and "active" in page
    assert str(first.metrics["val_delta_e_personal"])[:3] in page
    alice.post(reverse("web:model-activate", args=[first.pk]))
    assert EditorProfile.objects.get(user=owner).active_model == first
    download = alice.get(reverse("model-download", args=[first.pk]))  # the API's download, with the session
    assert download.status_code == 200
    assert load_model(b"".join(download.streaming_content)).metadata["kind"] == "personal"


def test_results_show_the_held_out_pairs_before_model_and_own_edit(alice, settings):
    settings.MIN_PAIRS_FOR_TRAINING = 4
    model = published_model(user("alice"), pairs=10)
    response = alice.get(reverse("web:results"))
    report = response.context["report"]
    assert report.held_out and len(report.pairs) == model.metrics["val_pairs"] == 2
    scores = [r.delta_e_model for r in report.pairs]
    assert scores == sorted(scores)
    # The scores are the job's own validation: their mean is the model's published validation dE00.
    assert sum(scores) / len(scores) == pytest.approx(model.metrics["val_delta_e_personal"], abs=0.02)
    worst = alice.get(reverse("web:results") + "?order=worst").context["rows"]
    assert [r.pair.pk for r in worst] == [r.pair.pk for r in reversed(report.pairs)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("personalize.web.RESULTS_PER_PAGE", 1)
        second = alice.get(reverse("web:results") + "?order=worst&page=2")
        assert [r.pair.pk for r in second.context["rows"]] == [report.pairs[0].pair.pk]
        assert "Page 2 of 2" in second.content.decode()
    page = response.content.decode()
    assert "What the model does" in page and "Your own edit" in page and "which it never learned from" in page
    for which in ("before", "model", "after"):
        image = alice.get(reverse("web:result-image", args=[model.pk, report.pairs[0].pair.pk, which]))
        assert image.status_code == 200 and Image.open(io.BytesIO(image.content)).format == "JPEG"

    # Once a pair of that training is deleted the held-out set cannot be named: every pair, and it says so.
    report.pairs[0].pair.delete()
    response = alice.get(reverse("web:results"))
    assert not response.context["report"].held_out and len(response.context["rows"]) == 9
    assert "can no longer be named" in response.content.decode()


def test_files_missing_from_storage_answer_404_in_words(alice, settings, caplog):
    from django.core.files.storage import default_storage

    from personalize import inference, results

    settings.MIN_PAIRS_FOR_TRAINING = 4
    owner = user("alice")
    model = published_model(owner, pairs=4)
    scored = results.held_out_pairs(model)[0][0]  # a pair the results page scores
    photo, intact = Pair.objects.filter(owner=owner).exclude(pk=scored.pk).order_by("id")[:2]
    missing = {"errors": ["a file of this image is missing from storage"]}

    # Deleted out of band: the photo behind a pair's image ...
    default_storage.delete(photo.before.name)
    image = alice.get(reverse("web:pair-image", args=[photo.pk, "before"]))
    assert image.status_code == 404 and image.json() == missing
    assert alice.get(reverse("web:pair-image", args=[photo.pk, "after"])).status_code == 200
    # ... a pair's thumbnail (the model's edit of it, and the results page, which scores it) ...
    default_storage.delete(scored.before_thumb.name)
    image = alice.get(reverse("web:result-image", args=[model.pk, scored.pk, "model"]))
    assert image.status_code == 404 and image.json() == missing
    page = alice.get(reverse("web:results") + f"?model={model.pk}")
    assert page.status_code == 404 and "Not found" in page.content.decode()
    # ... and the model's file.
    default_storage.delete(model.file)
    inference.cache.clear()
    image = alice.get(reverse("web:result-image", args=[model.pk, intact.pk, "model"]))
    assert image.status_code == 404 and image.json() == missing

    warnings = [r.getMessage() for r in caplog.records if r.name == "personalize.web"]
    for name in (photo.before.name, scored.before_thumb.name, model.file):
        assert any(name in w for w in warnings), name


# --- try a photo -------------------------------------------------------------------------------------------


def test_try_a_photo_says_in_words_when_the_active_model_file_is_missing(alice, settings):
    from django.core.files.storage import default_storage

    from personalize import inference

    settings.MIN_PAIRS_FOR_TRAINING = 4
    model = published_model(user("alice"), pairs=4)
    assert user("alice").editor_profile.active_model_id == model.pk
    default_storage.delete(model.file)
    inference.cache.clear()
    jpeg = encode(photo("coffee"), quality=90)
    response = alice.post(reverse("web:try-predict"), {"image": SimpleUploadedFile("c.jpg", jpeg)})
    assert response.status_code == 503
    assert "missing from storage" in response.json()["errors"][0]


def test_try_a_photo_predict_render_at_strengths_and_xmp(alice):
    jpeg = encode(photo("coffee"), quality=90)
    predicted = alice.post(reverse("web:try-predict"), {"image": SimpleUploadedFile("c.jpg", jpeg)})
    assert predicted.status_code == 200
    adjustments = predicted.json()["adjustments"]
    assert predicted.json()["model"]["kind"] == "base" and Prediction.objects.count() == 1

    def render(strength, max_size=200):
        response = alice.post(
            reverse("web:try-render"),
            {
                "image": SimpleUploadedFile("c.jpg", jpeg),
                "adjustments": json.dumps(adjustments),
                "strength": strength,
                "max_size": max_size,
            },
        )
        assert response.status_code == 200 and response["Content-Type"] == "image/jpeg"
        return response

    one, two, none = render(1), render(2), render(0)
    assert json.loads(one["X-Adjustments"]) == adjustments
    assert json.loads(none["X-Adjustments"]) == {name: 0 for name in adjustments}
    assert one.content != two.content != none.content
    assert max(Image.open(io.BytesIO(one.content)).size) == 200

    xmp = alice.post(reverse("web:try-xmp"), {"image": SimpleUploadedFile("c.jpg", jpeg), "strength": "0.5"})
    assert xmp.status_code == 200 and b"crs:Exposure2012" in xmp.content

    refused = alice.post(reverse("web:try-predict"), {"image": SimpleUploadedFile("c.jpg", b"nope")})
    assert refused.status_code == 400 and refused.json()["errors"] == [
        "image: not a readable image (expected JPEG, PNG, TIFF or WebP)"
    ]
    refused = alice.post(
        reverse("web:try-render"), {"image": SimpleUploadedFile("c.jpg", jpeg), "strength": "3"}
    )
    assert refused.status_code == 400 and refused.json()["errors"][0].startswith("strength:")
