"""The native layout: `images/<stem>.*`, `masks/<stem>.png` (mode L or P), `classes.json`, and
`train.txt` / `val.txt` / `test.txt` (one stem a line). Without `train.txt`, every image with a
mask that no other list names is a training image."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from fcn_keras.classes import ClassInfo
from fcn_keras.datasets.base import (
    SPLITS,
    LoadOptions,
    Sample,
    SegmentationDataset,
    read_list,
    renamed,
    safe_relative,
)
from fcn_keras.errors import DataError
from fcn_keras.io_utils import IMAGE_SUFFIXES


def looks_like(root: Path) -> bool:
    return (root / "images").is_dir() and (root / "masks").is_dir()


def load(root: Path, options: LoadOptions) -> SegmentationDataset:
    classes = _classes(root, options.names)
    finder = ImageFinder(root / "images")
    stems = {}
    for split in SPLITS:
        path = root / f"{split}.txt"
        if path.is_file():
            stems[split] = [safe_relative(text, f"{path}:{number}")
                            for number, text in read_list(path)]
    if "train" not in stems:
        listed = {str(s) for split_stems in stems.values() for s in split_stems}
        stems = {"train": [PurePosixPath(s) for s in finder.stems()
                           if s not in listed and (root / "masks" / f"{s}.png").is_file()],
                 **stems}
    splits = {split: [Sample(finder.find(stem), root / "masks" / f"{stem}.png", str(stem))
                      for stem in split_stems] for split, split_stems in stems.items()}
    return SegmentationDataset(root, "folder", classes, splits)


def _classes(root: Path, names: list[str] | None) -> ClassInfo:
    path = root / "classes.json"
    if path.is_file():
        return renamed(ClassInfo.load(path), names, str(path))
    if names is None:
        raise DataError(f"{path}: not found; a folder dataset needs classes.json "
                        '({"names": [...], "colors": [...], "ignore_index": 255}) or --classes')
    return ClassInfo(names)


class ImageFinder:
    """Finds `images/<stem>.*` with one directory listing per folder instead of a glob per stem."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.listings: dict[Path, dict[str, list[Path]]] = {}

    def _listing(self, directory: Path) -> dict[str, list[Path]]:
        if directory not in self.listings:
            found: dict[str, list[Path]] = {}
            try:   # entries' types come with the listing: no stat per file
                with os.scandir(directory) as entries:
                    for entry in entries:
                        if "." in entry.name and _is_file(entry):
                            found.setdefault(entry.name.rsplit(".", 1)[0], []).append(
                                directory / entry.name)
            except (OSError, ValueError):   # no such folder: every stem's image is missing
                pass
            self.listings[directory] = found
        return self.listings[directory]

    def find(self, stem: PurePosixPath) -> Path:
        """The image of `stem`: the first of `IMAGE_SUFFIXES` present, else any file of that
        stem (validation then names what is wrong with it), else a `<stem>.*` that is missing."""
        candidates = self._listing(self.folder / stem.parent).get(stem.name, [])
        known = [p for p in candidates if p.suffix.lower() in IMAGE_SUFFIXES]
        ordered = sorted(known, key=lambda p: IMAGE_SUFFIXES.index(p.suffix.lower())) \
            or sorted(candidates)
        return ordered[0] if ordered else self.folder / stem.parent / f"{stem.name}.*"

    def stems(self) -> list[str]:
        return sorted(self._listing(self.folder))


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False
