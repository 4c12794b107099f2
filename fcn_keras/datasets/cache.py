"""The conversion cache: layouts whose labels are not index PNGs convert them once and re-use them.

A conversion writes its masks under `<root>/.fcn_cache/` (VIA: `<root>/masks/`) and then a
manifest: the request it was made for (the source files' name, size and mtime, the class names
and attribute asked for) and the record of what it wrote. The next load re-uses the record when
the request is the same and the outputs are still there; anything else (another request, a
missing or stale mask, a manifest cut short, edited or of another version) converts again.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from fcn_keras.classes import ClassInfo
from fcn_keras.datasets.base import Sample
from fcn_keras.errors import DataError
from fcn_keras.io_utils import atomic_write_text, write_index_png

CACHE_DIR = ".fcn_cache"


def read_manifest(path: Path, request: dict, is_complete: Callable[[dict], bool]) -> dict | None:
    """The manifest at `path` when it was written for `request` and `is_complete(manifest)`
    holds (its outputs are all there and fresh); else None, also for a damaged manifest."""
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        if any(manifest.get(key) != value for key, value in request.items()):
            return None
        return manifest if is_complete(manifest) else None
    except (OSError, ValueError, AttributeError, TypeError, KeyError, DataError):
        return None


def write_manifest(path: Path, request: dict, record: dict) -> dict:
    """Write the manifest of a finished conversion (last, so a cut-short conversion has none)."""
    manifest = {**request, **record}
    atomic_write_text(path, json.dumps(manifest) + "\n")
    return manifest


def file_stamp(path: Path) -> dict:
    """What identifies a source file's content cheaply: its name, size and mtime."""
    stat = path.stat()
    return {"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def is_fresh(target: Path, source_mtime: float) -> bool:
    try:
        return target.stat().st_mtime >= source_mtime
    except OSError:
        return False


def cache_dir(root: Path, *parts: str) -> Path:
    path = root.joinpath(CACHE_DIR, *parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{path}: cannot create the conversion cache ({exc}); copy the dataset "
                        "to a writable folder") from None
    return path


def write_mask(path: Path, mask: np.ndarray, palette: list[int]) -> None:
    try:
        write_index_png(path, mask, palette)
    except OSError as exc:
        raise DataError(f"{path}: cannot write converted mask ({exc})") from None


# The record of a converter run (`fcn_keras.annotations.convert`): stems by split, image and
# mask paths relative to the data folder, and the classes.


def converted_record(result, splits: dict[str, list[str]], root: Path) -> dict:
    """The manifest record of a converter `result` whose stems fall into `splits`."""
    stems = {stem for split_stems in splits.values() for stem in split_stems}
    return {"splits": splits,
            "images": {s: _relative(result.image_paths[s], root) for s in stems},
            "masks": {s: _relative(result.mask_paths[s], root) for s in stems},
            "class_info": result.class_info.to_dict()}


def record_classes(record: dict) -> ClassInfo:
    return ClassInfo(**record["class_info"])


def record_samples(record: dict, root: Path) -> dict[str, list[Sample]]:
    return {split: [Sample(root / record["images"][stem], root / record["masks"][stem], stem)
                    for stem in stems] for split, stems in record["splits"].items()}


def record_is_whole(record: dict) -> bool:
    """Every listed stem has an image and a mask entry, and the classes are valid."""
    record_classes(record)
    return all(stem in record["images"] and stem in record["masks"]
               for stems in record["splits"].values() for stem in stems)


def _relative(path, root: Path) -> str:
    return os.path.relpath(Path(path).absolute(), root.absolute())
