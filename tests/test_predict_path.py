"""The full-file prediction path's costs outside the decode (issue 16): what was cut, and that it stays cut."""

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

GLIBC = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"

# A prediction's large buffers, roughly: the multipart copy and the bytes of a 2.2 MB upload, twice, and the
# decoder's 1/8-scale images. Allocated and freed once per "request".
FAULTS_PER_REQUEST = textwrap.dedent(
    """
    import resource
    import personalize.wsgi  # noqa: F401 (what every web process imports)

    def request():
        buffers = [bytearray(2_200_000) for _ in range(4)] + [bytearray(750_000) for _ in range(3)]
        del buffers

    request()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(20):
        request()
    print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
    """
)


def _faults_per_request(**env) -> float:
    result = subprocess.run(
        [sys.executable, "-c", FAULTS_PER_REQUEST],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "personalize.settings", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(result.stdout.split()[-1])


@pytest.mark.skipif(not GLIBC, reason="the allocator settings are glibc's")
def test_web_processes_reuse_freed_buffers_instead_of_faulting_them_in_per_request():
    """personalize.wsgi keeps freed memory in the process (personalize/malloc.py): with glibc's defaults the
    same buffers are handed back to the kernel and page-faulted in again on every request."""
    assert _faults_per_request() < 10
    assert _faults_per_request(PERSONALIZE_MALLOC_TUNING="0") > 1000


@pytest.mark.django_db
def test_sqlite_commits_append_to_a_write_ahead_log_and_connections_are_kept(settings):
    """A prediction's log is one commit: with a rollback journal each wrote, synced and deleted a file, and a
    connection opened per request re-read the schema (~2 ms of a prediction's CPU together)."""
    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's settings")
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA journal_mode")
        assert cursor.fetchone()[0] == "wal"
        cursor.execute("PRAGMA synchronous")
        assert cursor.fetchone()[0] == 1  # NORMAL
    assert settings.DATABASES["default"]["CONN_MAX_AGE"] > 0


@pytest.mark.django_db
def test_the_model_lookup_is_one_query_answering_as_the_orm_would(monkeypatch):
    """model_for is hand-written SQL (the ORM's building of it cost ~1 ms a prediction): the same answers."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from personalize import inference
    from personalize.accounts import create_or_get_editor
    from personalize.models import EditorProfile, PersonalModel
    from personalize.models_ops import activate_model

    monkeypatch.setattr(inference, "personal_model", lambda row: row)  # the row found, not its file
    (alice, _), (bob, _) = create_or_get_editor("alice"), create_or_get_editor("bob")

    def lookup(user):
        with CaptureQueriesContext(connection) as queries:
            found = inference.model_for(user)
        assert len(queries) == 1, queries.captured_queries
        return found

    assert lookup(alice).kind == "base"  # no profile yet
    EditorProfile.objects.get_or_create(user=alice)
    assert lookup(alice).kind == "base"  # a profile without an active model
    models = [
        PersonalModel.objects.create(
            owner=user, version=1, file=f"m/{user}.pt", size_bytes=1, sha256="ab" * 32
        )
        for user in (alice, bob)
    ]
    activate_model(alice, models[0])
    found = lookup(alice)
    assert (found.pk, found.version, found.file, found.sha256) == (models[0].pk, 1, "m/alice.pt", "ab" * 32)
    assert lookup(bob).kind == "base"  # alice's activation is hers alone
    activate_model(bob, models[1])
    assert lookup(bob).pk == models[1].pk and lookup(alice).pk == models[0].pk
    models[0].delete()  # the pointer is set to NULL
    assert lookup(alice).kind == "base"
