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
    splits = {}
    for split in SPLITS:
        path = root / f"{split}.txt"
        if path.is_file():   # each line becomes its sample at once: no list of Paths between
            splits[split] = [_sample(root, finder, safe_relative(text, f"{path}:{number}"))
                             for number, text in read_list(path)]
    if "train" not in splits:
        listed = {s.stem for samples in splits.values() for s in samples}
        splits = {"train": [_sample(root, finder, PurePosixPath(s)) for s in finder.stems()
                            if s not in listed and (root / "masks" / f"{s}.png").is_file()],
                  **splits}
    return SegmentationDataset(root, "folder", classes, splits)


def _sample(root: Path, finder: ImageFinder, stem: PurePosixPath) -> Sample:
    return Sample(finder.find(stem), root / "masks" / f"{stem}.png", str(stem))


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
        # Per folder: stem -> suffixes (".png", ...). Names, not Paths: a folder of 100,000
        # images held 50 MB of Paths while its list was loaded.
        self.listings: dict[Path, dict[str, list[str]]] = {}

    def _listing(self, directory: Path) -> dict[str, list[str]]:
        if directory not in self.listings:
            found: dict[str, list[str]] = {}
            try:   # entries' types come with the listing: no stat per file
                with os.scandir(directory) as entries:
                    for entry in entries:
                        if "." in entry.name and _is_file(entry):
                            stem, suffix = entry.name.rsplit(".", 1)
                            found.setdefault(stem, []).append("." + suffix)
            except (OSError, ValueError):   # no such folder: every stem's image is missing
                pass
            self.listings[directory] = found
        return self.listings[directory]

    def find(self, stem: PurePosixPath) -> Path:
        """The image of `stem`: the first of `IMAGE_SUFFIXES` present, else any file of that
        stem (validation then names what is wrong with it), else a `<stem>.*` that is missing."""
        suffixes = self._listing(self.folder / stem.parent).get(stem.name, [])
        known = [s for s in suffixes if s.lower() in IMAGE_SUFFIXES]
        ordered = sorted(known, key=lambda s: IMAGE_SUFFIXES.index(s.lower())) or sorted(suffixes)
        return self.folder / stem.parent / f"{stem.name}{ordered[0] if ordered else '.*'}"

    def stems(self) -> list[str]:
        return sorted(self._listing(self.folder))


def _is_file(entry: os.DirEntry) -> bool:
    try:
        return entry.is_file()
    except OSError:
        return False
