"""Reading a single photo's multipart form (POST /api/v1/predict) in one pass over the body.

Django's multipart parser streams the body in 64 KB chunks through several layers of Python (LazyStream,
BoundaryIter, upload handlers), copying the file piece by piece into a BytesIO, which the view then reads
back whole: for a 12-megapixel JPEG of 2.2 MB, ~1.5 ms of a full-file prediction's CPU, a twentieth of the
request, to find one boundary. Here a body of at most one upload's size is read in one call, its parts are
found with `bytes.find`, their headers parsed by Django's own function, and the photo is one slice of the
body, whose BytesIO hands it to `read()` without another copy.

Only a plain form takes this path: the body starts with the boundary and ends with the closing one, at
most MAX_PARTS parts, each with a Content-Disposition naming it, no Content-Transfer-Encoding, fields within
DATA_UPLOAD_MAX_MEMORY_SIZE. Anything else (a preamble, an encoded part, a truncated body, ...) goes to
Django's parser over the bytes already read, so that every error and edge case is answered exactly as
before; larger bodies never leave Django's parser (which spools big files to disk).
"""

from __future__ import annotations

import io

from django.conf import settings
from django.core.files.uploadedfile import InMemoryUploadedFile
from django.http import QueryDict
from django.http.multipartparser import (
    FIELD,
    FILE,
    MAX_TOTAL_HEADER_SIZE,
    LazyStream,
    MultiPartParserError,
    parse_boundary_stream,
)
from django.http.multipartparser import MultiPartParser as DjangoMultiPartParser
from django.utils.datastructures import MultiValueDict
from django.utils.encoding import force_str
from django.utils.http import parse_header_parameters
from rest_framework.exceptions import ParseError
from rest_framework.parsers import DataAndFiles, MultiPartParser, get_encoding

MAX_PARTS = 8
# A photo of MAX_UPLOAD_BYTES plus the form's other fields and the framing.
FORM_ALLOWANCE = 64 * 1024


class SinglePhotoMultiPartParser(MultiPartParser):
    """DRF's MultiPartParser, with a one-pass path for a body of at most one upload (see the module)."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        request = parser_context["request"]
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if stream is None or not 0 < length <= settings.MAX_UPLOAD_BYTES + FORM_ALLOWANCE:
            return super().parse(stream, media_type, parser_context)
        encoding = get_encoding(parser_context)
        meta = request.META.copy()
        meta["CONTENT_TYPE"] = media_type
        try:
            body = stream.read(length)
            # Django's own checks of the content type and boundary, and its parser for anything unusual.
            django_parser = DjangoMultiPartParser(meta, io.BytesIO(body), request.upload_handlers, encoding)
            boundary = parse_header_parameters(media_type)[1]["boundary"].encode("ascii")
            parsed = parse_plain_form(body, boundary, encoding, django_parser.sanitize_file_name)
            return DataAndFiles(*(parsed or django_parser.parse()))
        except MultiPartParserError as exc:
            raise ParseError(f"Multipart form parse error - {exc}") from exc


def parse_plain_form(body: bytes, boundary: bytes, encoding: str, sanitize_file_name):
    """(POST, FILES) exactly as Django's parser with its default upload handlers makes them, files in memory;
    None for a body that is not a plain form (see the module), which Django's parser must then read."""
    delimiter = b"--" + boundary
    if not body.startswith(delimiter):
        return None  # a preamble
    post, files = QueryDict(mutable=True), MultiValueDict()
    field_bytes = 0
    max_parts = min(
        MAX_PARTS,
        settings.DATA_UPLOAD_MAX_NUMBER_FIELDS or MAX_PARTS,
        settings.DATA_UPLOAD_MAX_NUMBER_FILES or MAX_PARTS,
    )
    pos = len(delimiter)
    for _ in range(max_parts):
        found = body.find(delimiter, pos)
        if found < 0:
            return None  # no closing boundary
        # As Django's parser: the part ends before the next boundary, less a CRLF (or a bare LF or CR).
        end = found
        if end > pos and body[end - 1 : end] == b"\n":
            end -= 1
        if end > pos and body[end - 1 : end] == b"\r":
            end -= 1
        header_end = body.find(b"\r\n\r\n", pos, min(pos + MAX_TOTAL_HEADER_SIZE, end))
        if header_end < 0:
            return None
        kind, meta_data, _ = parse_boundary_stream(
            LazyStream(iter([body[pos : header_end + 4]])), MAX_TOTAL_HEADER_SIZE
        )
        try:
            disposition = meta_data["content-disposition"][1]
            field_name = force_str(disposition["name"].strip(), encoding, errors="replace")
        except (KeyError, IndexError, AttributeError):
            return None
        if "content-transfer-encoding" in meta_data or kind not in (FIELD, FILE):
            return None
        content = body[header_end + 4 : end]
        if kind == FIELD:
            field_bytes += len(content) + len(field_name) + 2
            if (
                settings.DATA_UPLOAD_MAX_MEMORY_SIZE is not None
                and field_bytes > settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            ):
                return None
            post.appendlist(field_name, force_str(content, encoding, errors="replace"))
        else:
            file_name = sanitize_file_name(force_str(disposition["filename"], encoding, errors="replace"))
            if file_name:  # Django skips a file part whose name sanitizes to nothing
                content_type, content_type_extra = meta_data.get("content-type", ("", {}))
                files.appendlist(
                    field_name,
                    InMemoryUploadedFile(
                        file=io.BytesIO(content),
                        field_name=field_name,
                        name=file_name,
                        content_type=content_type.strip(),
                        size=len(content),
                        charset=content_type_extra.get("charset"),
                        content_type_extra=content_type_extra,
                    ),
                )
        pos = found + len(delimiter)
        if body[pos:] in (b"--", b"--\r\n"):
            post._mutable = False
            return post, files
    return None  # more parts, or something after the closing boundary
