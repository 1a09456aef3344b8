"""Finding an editor's photos on disk: folders of befores and afters matched by name, photos to predict."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from personalize.client.common import UsageError, err
from personalize.client.conventions import is_photo, stem_key
from personalize.client.previews import is_raw


def require_folder(raw: str) -> Path:
    folder = Path(raw).expanduser()
    if not folder.exists():
        raise UsageError(f"folder not found: {raw}")
    if not folder.is_dir():
        raise UsageError(f"not a folder: {raw}")
    return folder


def names_list(paths: Iterable[Path], limit: int = 10) -> str:
    names = sorted(path.name for path in paths)
    shown = ", ".join(names[:limit])
    return shown + (f", ... and {len(names) - limit} more" if len(names) > limit else "")


def supported_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(photos with a supported extension, other files); hidden files are ignored."""
    photos, others = [], []
    for path in sorted(folder.iterdir()):
        if path.name.startswith(".") or not path.is_file():
            continue
        (photos if is_photo(path) else others).append(path)
    return photos, others


def by_stem(photos: list[Path]) -> tuple[dict[str, Path], list[Path]]:
    """{lowercased stem: path} and the files whose stem is ambiguous (IMG_1.jpg beside IMG_1.png)."""
    groups: dict[str, list[Path]] = {}
    for path in photos:
        groups.setdefault(stem_key(path), []).append(path)
    unique = {stem: paths[0] for stem, paths in groups.items() if len(paths) == 1}
    ambiguous = [path for paths in groups.values() if len(paths) > 1 for path in paths]
    return unique, ambiguous


@dataclass
class PairFiles:
    name: str
    before: Path
    after: Path
    mask: Path | None = None
    digest: str = ""


def match_folders(before_dir: Path, after_dir: Path, mask_dir: Path | None) -> list[PairFiles]:
    """Pairs matched by stem (case-insensitive, any supported extension); problems are reported."""
    before_photos, before_other = supported_files(before_dir)
    after_photos, after_other = supported_files(after_dir)
    befores, before_ambiguous = by_stem(before_photos)
    afters, after_ambiguous = by_stem(after_photos)
    masks: dict[str, Path] = {}
    if mask_dir is not None:
        masks, _ = by_stem(supported_files(mask_dir)[0])

    stems = sorted(befores.keys() & afters.keys())
    pairs = [PairFiles(befores[s].stem, befores[s], afters[s], masks.get(s)) for s in stems]

    only_before = [befores[s] for s in befores.keys() - afters.keys()]
    only_after = [afters[s] for s in afters.keys() - befores.keys()]
    if only_before:
        err(
            f"{len(only_before)} file(s) in {before_dir} without a match in {after_dir}: {names_list(only_before)}"
        )
    if only_after:
        err(
            f"{len(only_after)} file(s) in {after_dir} without a match in {before_dir}: {names_list(only_after)}"
        )
    for folder, ambiguous in ((before_dir, before_ambiguous), (after_dir, after_ambiguous)):
        if ambiguous:
            err(f"skipped {len(ambiguous)} file(s) in {folder} sharing a name stem: {names_list(ambiguous)}")
    for folder, other in ((before_dir, before_other), (after_dir, after_other)):
        if other:
            err(
                f"ignored {len(other)} file(s) in {folder} with an unsupported extension: {names_list(other, 5)}"
            )
    return pairs


def expand_images(raw_paths: list[str], raw: bool = False) -> list[Path]:
    """Files as given (any extension: the server decides), folders expanded to their supported photos
    (and with raw=True their RAW files, whose embedded previews the client reads)."""
    images: list[Path] = []
    for given in raw_paths:
        path = Path(given).expanduser()
        if not path.exists():
            raise UsageError(f"file not found: {given}")
        if path.is_dir():
            photos, others = supported_files(path)
            images.extend(photos)
            if raw:
                images.extend(other for other in others if is_raw(other))
        else:
            images.append(path)
    if not images:
        raise UsageError("no photos to predict")
    return images
