"""CamVid in the SegNet layout: `train.txt` / `val.txt` / `test.txt` of `image mask` pairs, index
masks, 11 classes with void (11) ignored; `classes.json` in the folder overrides the classes.

SegNet's lists hold absolute paths (`/SegNet/CamVid/train/x.png`); they are mapped to their
last two components inside the data folder. Any other path must stay inside the folder."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from fcn_keras.classes import ClassInfo, camvid_classes
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


def looks_like(root: Path) -> bool:
    """The first list file holds `image mask` pairs."""
    for split in SPLITS:
        path = root / f"{split}.txt"
        if path.is_file():
            try:
                entries = read_list(path)
            except DataError:
                return False
            return bool(entries) and len(entries[0][1].split()) == 2
    return False


def load(root: Path, options: LoadOptions) -> SegmentationDataset:
    path = root / "classes.json"
    classes = ClassInfo.load(path) if path.is_file() else camvid_classes()
    classes = renamed(classes, options.names, str(root))
    splits = {}
    for split in SPLITS:
        list_file = root / f"{split}.txt"
        if list_file.is_file():
            splits[split] = [_sample(root, text, f"{list_file}:{number}")
                             for number, text in read_list(list_file)]
    if not splits:
        raise DataError(f"{root}: not a CamVid (SegNet) folder; expected train.txt, val.txt or "
                        "test.txt with 'image_path mask_path' lines")
    return SegmentationDataset(root, "camvid", classes, splits)


def _sample(root: Path, text: str, where: str) -> Sample:
    fields = text.split()
    if len(fields) != 2:
        raise DataError(f"{where}: expected 'image_path mask_path', got '{text}'")
    image = _segnet_path(fields[0], root, where)
    return Sample(image, _segnet_path(fields[1], root, where), image.stem)


def _segnet_path(entry: str, root: Path, where: str) -> Path:
    """A SegNet list path inside `root`; SegNet's absolute paths keep their last two parts."""
    posix = entry.replace("\\", "/")
    if PurePosixPath(posix).is_absolute():
        normal = PurePosixPath(os.path.normpath(posix))
        try:
            return root / normal.relative_to(PurePosixPath(root.resolve().as_posix()))
        except ValueError:
            return root.joinpath(*normal.parts[1:][-2:])
    return root / safe_relative(entry, where)
