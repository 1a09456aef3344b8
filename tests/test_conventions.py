"""Knowledge written once: photo suffixes, matching by stem, the content hash, the mask-to-weight formula and
the job duration, shared by the client, the server, the worker and rlcore."""

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone

from personalize.accounts import create_or_get_editor
from personalize.client import api as client_api
from personalize.client import folders as client_folders
from personalize.client.conventions import PHOTO_SUFFIXES, is_photo, pair_hash, stem_key
from personalize.images import ACCEPTED_FORMATS
from personalize.models import TrainingJob, succeeded_durations
from personalize.pairs import content_hash, match_by_name
from rlcore import data, faces
from tests.photos import pair_bytes


def test_one_set_of_photo_suffixes_everywhere():
    # rlcore's command line read .bmp, which the service refuses: the same folder must work in both.
    assert data.IMAGE_SUFFIXES == PHOTO_SUFFIXES
    assert {f".{ext}" for ext in ACCEPTED_FORMATS.values()} <= PHOTO_SUFFIXES
    assert not is_photo("scan.bmp") and is_photo("IMG_1.JPG") and not is_photo("._IMG_1.jpg")


def test_stems_match_case_insensitively_in_the_client_the_zip_and_rlcore(tmp_path):
    assert stem_key("IMG_0001.JPG") == stem_key("img_0001.tif") == "img_0001"
    matched, skipped = match_by_name(["before/IMG_1.JPG", "after/img_1.tif", "before/x.bmp"])
    assert [m[0] for m in matched] == ["img_1"] and [s["name"] for s in skipped] == ["before/x.bmp"]

    for folder in ("before", "after"):
        (tmp_path / folder).mkdir()
    for i, (stem_before, stem_after) in enumerate([("IMG_1", "img_1"), ("Beach", "BEACH")]):
        before, after = pair_bytes(i)
        (tmp_path / "before" / f"{stem_before}.jpg").write_bytes(before)
        (tmp_path / "after" / f"{stem_after}.JPG").write_bytes(after)
    # the client matches them
    pairs = client_folders.match_folders(tmp_path / "before", tmp_path / "after", None)
    assert sorted(p.name for p in pairs) == ["Beach", "IMG_1"]
    # and so does rlcore's command line (it used to match stems case-sensitively: no pair at all here)
    warnings = []
    pair_set = data.load_pairs_dir(tmp_path, warn=warnings.append)
    assert sorted(pair_set.names) == ["Beach", "IMG_1"], warnings


def test_client_and_server_compute_the_same_content_hash(tmp_path):
    before, after = pair_bytes(3)
    (tmp_path / "b.jpg").write_bytes(before)
    (tmp_path / "a.jpg").write_bytes(after)
    expected = pair_hash([before, after])
    assert client_api.content_hash(tmp_path / "b.jpg", tmp_path / "a.jpg") == expected
    assert content_hash(before, after) == expected
    assert expected != pair_hash([after, before])  # order matters: before, then after


def test_one_mask_to_weight_formula():
    mask = np.linspace(0, 1, 16, dtype=np.float32).reshape(4, 4)
    assert np.allclose(faces.weights_from_mask(mask, 2.0), 1 + 2 * mask)
    as_uint8 = np.rint(mask * 255).astype(np.uint8)
    assert np.allclose(faces.mask_to_weights(as_uint8, 2.0), faces.weights_from_mask(as_uint8 / 255, 2.0))
    image = np.full((32, 32, 3), 128, np.uint8)  # no face: the face mask is zero, the weights one
    assert np.all(faces.face_weights(image, 3.0) == faces.weights_from_mask(faces.face_mask(image), 3.0))


@pytest.mark.django_db
def test_job_durations_have_one_definition():
    user, _ = create_or_get_editor("dora")
    now = timezone.now()
    TrainingJob.objects.create(
        owner=user, seconds=5, status="succeeded", started_at=now - timedelta(seconds=42), finished_at=now
    )
    TrainingJob.objects.create(owner=user, seconds=5, status="failed", started_at=now, finished_at=now)
    TrainingJob.objects.create(owner=user, seconds=5, status="succeeded", started_at=None, finished_at=now)
    assert succeeded_durations(TrainingJob.objects.all()) == [42.0]
