"""The full-file prediction path's costs outside the decode (issue 16): what was cut, and that it stays cut."""

import functools
import textwrap

import pytest

from tests.conftest import GLIBC, minor_faults_printed

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
    return minor_faults_printed(FAULTS_PER_REQUEST, **env)


@pytest.mark.skipif(not GLIBC, reason="the allocator settings are glibc's")
def test_web_processes_reuse_freed_buffers_instead_of_faulting_them_in_per_request():
    """personalize.wsgi keeps freed memory in the process (rlcore/malloc.py): with glibc's defaults the
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


# --- the single photo's form, read in one pass (personalize/uploads.py) ----------------------------------

BOUNDARY = "7d1fbench"
JPEG_LIKE = b"\xff\xd8" + bytes(range(256)) * 40 + b"--7d1fbenc\r\n--" + b"\xff\xd9"  # near-boundaries inside


def _part(
    name: str, content: bytes, filename: str | None = None, *headers: str, eol: bytes = b"\r\n"
) -> bytes:
    disposition = f'Content-Disposition: form-data; name="{name}"'
    if filename is not None:
        disposition += f'; filename="{filename}"'
    head = "\r\n".join([disposition, *headers]).encode()
    return b"--" + BOUNDARY.encode() + b"\r\n" + head + b"\r\n\r\n" + content + eol


def _form(*parts: bytes, closing: bytes = b"--\r\n") -> bytes:
    return b"".join(parts) + b"--" + BOUNDARY.encode() + closing


PLAIN_FORMS = {
    "the photo alone": _form(_part("image", JPEG_LIKE, "photo.jpg", "Content-Type: image/jpeg")),
    "photo and options": _form(
        _part("strength", b"0.5"),
        _part("image", JPEG_LIKE, "IMG_1.JPG", "Content-Type: image/jpeg"),
        _part("format", b"xmp"),
    ),
    "no closing CRLF": _form(_part("image", JPEG_LIKE, "a.jpg"), closing=b"--"),
    "bare LF before a boundary": _form(_part("image", JPEG_LIKE, "a.jpg", eol=b"\n")),
    "a path and an entity in the file name": _form(_part("image", JPEG_LIKE, "C:\\x\\..\\&amp;b.jpg")),
    "a file name that sanitizes to nothing": _form(_part("image", JPEG_LIKE, ".."), _part("format", b"json")),
    "an empty file name (a field)": _form(_part("image", b"abc", "")),
    "an empty file": _form(_part("image", b"", "empty.jpg", "Content-Type: image/jpeg")),
    "a charset on the file": _form(
        _part("image", JPEG_LIKE, "a.jpg", "Content-Type: image/jpeg; charset=utf-8")
    ),
    "two files, one field name": _form(_part("image", JPEG_LIKE, "a.jpg"), _part("image", b"x", "b.jpg")),
    "UTF-8 in names and values": _form(_part("légende", "été".encode()), _part("image", b"x", "ça.jpg")),
    "invalid UTF-8 in a value": _form(_part("format", b"\xff\xfe")),
}
OTHER_FORMS = {  # read by Django's parser
    "a preamble": b"preamble\r\n" + PLAIN_FORMS["the photo alone"],
    "base64": _form(_part("image", b"aGVsbG8=", "a.jpg", "Content-Transfer-Encoding: base64")),
    "a part without a disposition": _form(
        b"--" + BOUNDARY.encode() + b"\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    ),
    "a part without a name": _form(
        b"--" + BOUNDARY.encode() + b"\r\nContent-Disposition: form-data\r\n\r\nx\r\n"
    ),
    "more parts than the fast path reads": _form(*[_part(f"f{i}", b"v") for i in range(12)]),
    "no closing boundary": _form(_part("image", JPEG_LIKE, "a.jpg"), closing=b"")[: -len(BOUNDARY) - 2],
    "an epilogue": PLAIN_FORMS["the photo alone"] + b"epilogue",
    "headers over 1 KB": _form(_part("image", b"x", "a.jpg", "X-Pad: " + "p" * 1100)),
}


def _request(body: bytes):
    from django.test import RequestFactory

    return RequestFactory().generic(
        "POST", "/api/v1/predict", body, content_type=f"multipart/form-data; boundary={BOUNDARY}"
    )


def _summary(post, files) -> tuple:
    return (
        post._mutable,
        sorted((key, post.getlist(key)) for key in post),
        sorted(
            (
                key,
                [
                    (f.name, f.content_type, f.charset, f.size, f.content_type_extra, f.read())
                    for f in files.getlist(key)
                ],
            )
            for key in files
        ),
    )


def _with_django(body: bytes):
    from django.http.multipartparser import MultiPartParser

    request = _request(body)
    try:
        return _summary(*MultiPartParser(request.META, request, request.upload_handlers, "utf-8").parse())
    except Exception as exc:  # noqa: BLE001 (the same error is expected)
        return type(exc).__name__


def _with_ours(body: bytes):
    from rest_framework.exceptions import ParseError

    from personalize.uploads import SinglePhotoMultiPartParser

    request = _request(body)
    context = {"request": request, "encoding": "utf-8"}
    try:
        parsed = SinglePhotoMultiPartParser().parse(request, request.META["CONTENT_TYPE"], context)
    except ParseError as exc:
        return type(exc.__cause__).__name__
    except Exception as exc:  # noqa: BLE001
        return type(exc).__name__
    return _summary(parsed.data, parsed.files)


@pytest.mark.parametrize("case", list(PLAIN_FORMS) + list(OTHER_FORMS))
def test_the_single_photo_form_parses_as_djangos_parser_parses_it(case):
    from django.http.multipartparser import MultiPartParser

    from personalize.uploads import parse_plain_form

    body = PLAIN_FORMS.get(case) or OTHER_FORMS[case]
    one_pass = parse_plain_form(
        body, BOUNDARY.encode(), "utf-8", functools.partial(MultiPartParser.sanitize_file_name, None)
    )
    assert (one_pass is not None) == (case in PLAIN_FORMS)  # which path it took
    assert _with_ours(body) == _with_django(body)


def test_the_photo_is_one_slice_of_the_body_read_without_another_copy():
    from personalize.uploads import SinglePhotoMultiPartParser

    request = _request(PLAIN_FORMS["photo and options"])
    parsed = SinglePhotoMultiPartParser().parse(request, request.META["CONTENT_TYPE"], {"request": request})
    photo = parsed.files["image"]
    assert photo.read() is photo.file.getvalue()  # BytesIO hands its bytes object over as it is
    assert photo.size == len(JPEG_LIKE) and parsed.data["strength"] == "0.5"


@pytest.mark.django_db
@pytest.mark.parametrize("over_by", [1, 100_000])  # within the one-pass read's size, and past it
def test_a_photo_over_the_upload_limit_is_refused_by_its_size_either_way(settings, over_by):
    from django.core.files.uploadedfile import SimpleUploadedFile

    from tests.test_api import api_client

    settings.MAX_UPLOAD_BYTES = 50_000
    photo = b"\xff\xd8" + b"x" * (settings.MAX_UPLOAD_BYTES + over_by)
    response = api_client("alice").post(
        "/api/v1/predict", {"image": SimpleUploadedFile("big.jpg", photo)}, format="multipart"
    )
    assert response.status_code == 400, response.content
    assert "the limit is 50000 bytes" in response.json()["image"][0]


@pytest.mark.django_db(transaction=True)
def test_a_single_prediction_is_logged_in_one_statement_and_a_batch_in_one_insert():
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from personalize import inference
    from personalize.accounts import create_or_get_editor
    from personalize.models import Prediction
    from personalize.models_ops import log_prediction, log_predictions

    alice, _ = create_or_get_editor("alice")
    served = inference.ServedModel("base", None, "base-1", model=None)
    with CaptureQueriesContext(connection) as single:
        log_prediction(alice, served, {"exposure": 5}, 1.0, 30.0)
    assert [q["sql"].split()[0] for q in single.captured_queries] == ["INSERT"]  # no BEGIN around it
    with CaptureQueriesContext(connection) as batch:
        log_predictions(alice, served, [{"exposure": 1}, {"exposure": 2}], 0.5, 10.0)
    assert sum(q["sql"].startswith("INSERT") for q in batch.captured_queries) == 1
    logged = list(Prediction.objects.order_by("id").values_list("adjustments", "strength", "latency_ms"))
    assert logged == [({"exposure": 5}, 1.0, 30.0), ({"exposure": 1}, 0.5, 5.0), ({"exposure": 2}, 0.5, 5.0)]


@pytest.mark.django_db(transaction=True)
def test_the_log_is_written_as_the_orm_would_write_it():
    """log_predictions' INSERT is written out (the ORM's building of it cost 0.2-0.3 ms a prediction): each
    field converted by the field itself, so a row reads back exactly as one Model.save() stored."""
    from django.utils import timezone

    from personalize import inference
    from personalize.accounts import create_or_get_editor
    from personalize.models import PersonalModel, Prediction
    from personalize.models_ops import log_predictions

    alice, _ = create_or_get_editor("alice")
    model = PersonalModel.objects.create(
        owner=alice, version=3, file="m/a.pt", size_bytes=1, sha256="cd" * 32
    )
    adjustments = [{"exposure": -7, "fade": 100}, {"tint": 0, "note": "ü \" '"}]
    for served in (
        inference.ServedModel("personal", model.pk, 3, None),
        inference.ServedModel("base", None, "b", None),
    ):
        started = timezone.now()
        log_predictions(alice, served, adjustments, 0.75, 12.5)
        for values in adjustments:
            Prediction.objects.create(
                owner=alice, model_id=served.id, model_kind=served.kind, adjustments=values, strength=0.75,
                latency_ms=6.25,
            )  # fmt: skip
    rows = list(Prediction.objects.order_by("id").values())
    assert len(rows) == 8
    for row in rows:
        assert (
            row.pop("id")
            and started - timezone.timedelta(seconds=60) < row.pop("created_at") <= timezone.now()
        )
    written, by_the_orm = rows[0:2] + rows[4:6], rows[2:4] + rows[6:8]
    assert written == by_the_orm
    assert [type(v) for v in written[0].values()] == [type(v) for v in by_the_orm[0].values()]
    assert written[0]["model_id"] == model.pk and written[2]["model_id"] is None


def test_strength_scales_every_slider_rounded_half_to_even_and_clipped_to_the_editor_range():
    from personalize.inference import scale
    from rlcore.editor import ADJUSTMENTS

    adjustments = {"exposure": 25, "contrast": -60, "fade": 3, "tint": 100}
    assert scale(adjustments, 1.0) == {name: adjustments.get(name, 0) for name in ADJUSTMENTS}
    half = scale(adjustments, 0.5)
    assert (half["exposure"], half["contrast"], half["fade"], half["tint"]) == (12, -30, 2, 50)
    double = scale(adjustments, 2.0)
    assert (double["exposure"], double["contrast"], double["fade"], double["tint"]) == (50, -100, 6, 100)
    assert set(scale({}, 2.0).values()) == {0} and all(type(v) is int for v in double.values())
