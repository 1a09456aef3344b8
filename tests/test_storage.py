"""Media storage: every read and write of photos, thumbnails and model files goes through Django's storage
API, so that an S3-compatible bucket works by configuration when web and workers run on different machines;
checkpoints stay on the worker's disk, written atomically by one helper (rlcore.files).

The pipeline test runs a real S3-compatible server (moto's, in a thread of this process) and a real worker
process, and points MEDIA_ROOT of both the web side and the worker at a plain *file*: any code that wrote or
read media under MEDIA_ROOT instead of through the storage would fail there.
"""

import hashlib
import time

import boto3
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from personalize import settings as settings_module
from personalize.accounts import create_or_get_editor
from personalize.devstack import free_port
from personalize.models import PersonalModel, TrainingJob
from rlcore import files
from rlcore.modelfile import load_model
from tests.conftest import start_worker, stop_process, subprocess_env, wait_for
from tests.photos import pair_bytes
from tests.test_api import api_client, upload
from workers import training

BUCKET = "personalize-media"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


# ---------------------------------------------------------------------------------------------------------
# rlcore.files: one naming rule for temporary files, shared by the writer and the clean-up


def test_write_atomic_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "deep" / "model.pt"
    assert files.write_atomic(target, b"first") == 5
    files.write_atomic(target, b"second")
    assert target.read_bytes() == b"second"
    assert sorted(p.name for p in target.parent.iterdir()) == ["model.pt"]


def test_remove_deletes_temporary_files_of_any_process(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    target = folder / "job-1.ckpt"
    target.write_bytes(b"state")
    crashed = folder / "job-1.ckpt.tmp4242"  # another process's, which died mid-write
    crashed.write_bytes(b"half")
    mine = files.temporary_path(target)
    mine.write_bytes(b"half")
    unrelated = folder / "job-1.ckpt-notes"
    unrelated.write_bytes(b"keep")
    assert files.is_temporary(crashed) and files.is_temporary(mine) and not files.is_temporary(target)

    files.remove(target)
    assert sorted(p.name for p in folder.iterdir()) == ["job-1.ckpt-notes"]


def test_remove_checkpoint_deletes_what_rlcore_left_behind(db, checkpoint_dir):
    """The bug this replaced: rlcore wrote `.tmp{pid}` while the clean-up deleted `.tmp`, so a worker killed
    mid-write left a temporary checkpoint behind for good."""
    user, _ = create_or_get_editor("olga")
    job = TrainingJob.objects.create(owner=user, seconds=1, status=TrainingJob.Status.FAILED)
    path = training.checkpoint_path(job)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"state")
    path.with_name(f"{path.name}.tmp31337").write_bytes(b"half-written by a killed worker")
    training.remove_checkpoint(job)
    assert list(checkpoint_dir.rglob("*.ckpt*")) == []


# ---------------------------------------------------------------------------------------------------------
# The whole pipeline against an S3-compatible server


@pytest.fixture
def s3(monkeypatch, settings, tmp_path):
    """A moto S3 server with one bucket; this process's default storage is that bucket (the same settings
    code as production: personalize.settings.media_storage), and MEDIA_ROOT is a file, not a folder."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MEDIA_S3_ENDPOINT_URL", endpoint)
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    settings.STORAGES = {**settings.STORAGES, "default": settings_module.media_storage(BUCKET)}
    not_a_folder = tmp_path / "media-root-is-a-file"
    not_a_folder.write_text("nothing may be stored under MEDIA_ROOT when media is in a bucket")
    settings.MEDIA_ROOT = not_a_folder
    try:
        yield client, endpoint, not_a_folder
    finally:
        server.stop()


def bucket_keys(client) -> list[str]:
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return sorted(item["Key"] for page in pages for item in page.get("Contents", []))


@pytest.mark.slow
def test_upload_train_publish_predict_with_media_in_s3(s3, transactional_db, settings, tmp_path):
    client, endpoint, not_a_folder = s3
    settings.MIN_PAIRS_FOR_TRAINING = 4
    env = subprocess_env(not_a_folder, MEDIA_S3_BUCKET=BUCKET, MEDIA_S3_ENDPOINT_URL=endpoint, **CREDENTIALS)
    worker = start_worker(env, "s3-worker", log_path=tmp_path / "worker.log")
    try:
        api = api_client("sam")

        # upload: photos, thumbnails and masks land in the bucket
        pair_ids = []
        for i in range(4):
            before, after = pair_bytes(60 + i)
            response = upload(api, before, after)
            assert response.status_code == 201, response.content
            pair_ids.append(response.json()["id"])
        stored = bucket_keys(client)
        assert len([k for k in stored if k.startswith("pairs/")]) >= 4 * 4
        assert all(k.startswith("pairs/") for k in stored)

        # train and publish: the worker reads thumbnails from and writes the model to the bucket
        job = api.post("/api/v1/jobs", {"seconds": 3}, format="json").json()
        state = wait_for(
            lambda: (
                (s := api.get(f"/api/v1/jobs/{job['id']}").json())["status"]
                in ("succeeded", "failed", "cancelled")
                and s
            ),
            timeout=150,
            message="the job",
        )
        assert state["status"] == "succeeded", (state, (tmp_path / "worker.log").read_text()[-3000:])
        model = PersonalModel.objects.get(pk=state["model"])
        assert model.file in bucket_keys(client)
        data = client.get_object(Bucket=BUCKET, Key=model.file)["Body"].read()
        assert len(data) == model.size_bytes and hashlib.sha256(data).hexdigest() == model.sha256

        # predict and download: the web side loads the model from the bucket
        before, _ = pair_bytes(99)
        prediction = api.post(
            "/api/v1/predict", {"image": SimpleUploadedFile("x.jpg", before)}, format="multipart"
        ).json()
        assert prediction["model"] == {"id": model.pk, "version": 1, "kind": "personal"}
        download = api.get(f"/api/v1/models/{model.pk}/download")
        assert download.status_code == 200
        assert load_model(b"".join(download.streaming_content)).metadata["kind"] == "personal"

        # delete a pair: its objects go too
        assert api.delete(f"/api/v1/pairs/{pair_ids[0]}").status_code == 204
        remaining = bucket_keys(client)
        assert len([k for k in remaining if k.startswith("pairs/")]) < len(
            [k for k in stored if k.startswith("pairs/")]
        )

        # orphan clean-up lists and deletes through the storage: a stray model file goes, the published stays
        stray = f"models/{model.owner_id}/job-999-stray.pt"
        client.put_object(Bucket=BUCKET, Key=stray, Body=b"left by a crash between save and commit")
        time.sleep(1.1)  # S3 times have one-second resolution
        removed = training.clean_orphan_files(min_age_seconds=1)["removed"]
        assert removed == [stray]
        assert model.file in bucket_keys(client) and stray not in bucket_keys(client)
    finally:
        stop_process(worker)
    assert not_a_folder.is_file()  # still the file: nothing stored anything under MEDIA_ROOT
