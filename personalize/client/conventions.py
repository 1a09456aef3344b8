"""File conventions the client and the server must agree on, written once: which files are photos, how a
before and an after are matched by name, and a pair's content hash (how an upload is recognised as one
the editor already made).

It lives in the client package because the client installs alone (no Django, no rlcore): the server
(personalize.pairs, the web app) imports it from here. rlcore, which imports nothing of ours, keeps its own
copy of the suffixes for its command line (rlcore.data.IMAGE_SUFFIXES); tests/test_conventions.py keeps the
two equal.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import PurePath

# Photo files the service accepts (JPEG, PNG, TIFF, WebP: personalize.images.ACCEPTED_FORMATS), by suffix,
# in any case.
PHOTO_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp"})


def is_photo(name: str | PurePath) -> bool:
    """A supported photo by its suffix, any case; hidden files (".name", macOS "._name") are not."""
    path = PurePath(name)
    return not path.name.startswith(".") and path.suffix.lower() in PHOTO_SUFFIXES


def stem_key(name: str | PurePath) -> str:
    """What a before and an after are matched by: the file name without its suffix, case-insensitive
    (IMG_0001.JPG matches img_0001.tif)."""
    return PurePath(name).stem.lower()


def pair_hash(chunks: Iterable[bytes]) -> str:
    """A pair's content hash: sha256 of the before file's bytes followed by the after file's bytes. The
    server stores it with every pair; the client computes it to skip pairs already uploaded."""
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def file_chunks(*paths, size: int = 1 << 20):
    """The bytes of each file in turn, in blocks (so that a 60 MB photo is never read whole)."""
    for path in paths:
        with open(path, "rb") as handle:
            while block := handle.read(size):
                yield block
