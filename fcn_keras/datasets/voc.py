"""PASCAL VOC: `JPEGImages/`, `SegmentationClass/`, `ImageSets/Segmentation/{train,val}.txt`; the
path may also be `VOCdevkit` or its parent. Also CVAT's "Segmentation mask 1.1" export
(`--data-format cvat-mask`: the same folders with a `labelmap.txt`).

Palette and grey masks are read in place (PIL gives their indices); RGB masks are mapped through
the class colours once into `<root>/.fcn_cache/SegmentationClassIndex/` (unknown colours,
including the boundary colour 224,224,192, become the ignore index).
"""

from __future__ import annotations

import hashlib
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from fcn_keras.classes import IGNORE_INDEX, ClassInfo, voc_classes
from fcn_keras.datasets.base import (
    SPLITS,
    LoadOptions,
    Sample,
    SegmentationDataset,
    display,
    read_list,
    renamed,
    safe_relative,
)
from fcn_keras.datasets.cache import CACHE_DIR, cache_dir, is_fresh, write_mask
from fcn_keras.datasets.checks import problem_report
from fcn_keras.errors import DataError

VOC_BOUNDARY = (224, 224, 192)


def find_root(path: Path) -> Path | None:
    """The VOC20xx folder for a path given as VOC2012, VOCdevkit or VOCdevkit's parent."""
    candidates = [path, path / "VOC2012", path / "VOCdevkit" / "VOC2012"]
    for parent in (path, path / "VOCdevkit"):
        if parent.is_dir():
            candidates += sorted(parent.glob("VOC20*"), reverse=True)
    for candidate in candidates:
        if (candidate / "JPEGImages").is_dir() and (
                (candidate / "SegmentationClass").is_dir()
                or (candidate / "ImageSets" / "Segmentation").is_dir()):
            return candidate
    return None


def looks_like(root: Path) -> bool:
    return find_root(root) is not None


def load(path: Path, options: LoadOptions) -> SegmentationDataset:
    return _load(path, options.names, need_class_file=False)


def load_cvat_mask(path: Path, options: LoadOptions) -> SegmentationDataset:
    return _load(path, options.names, need_class_file=True)


def _load(path: Path, names: list[str] | None, need_class_file: bool) -> SegmentationDataset:
    root = find_root(path)
    if root is None:
        raise DataError(f"{path}: not a VOC folder; expected JPEGImages/, SegmentationClass/ "
                        "and ImageSets/Segmentation/ (in VOC2012/ or VOCdevkit/VOC2012/)")
    classes, strict = _classes(root, path, names, need_class_file)
    cache = "SegmentationClassIndex" if strict is None else \
        "SegmentationClassIndex-" + hashlib.sha256(repr(classes.colors).encode()).hexdigest()[:8]
    lists = root / "ImageSets" / "Segmentation"
    splits = {}
    for split in SPLITS:
        list_file = lists / f"{split}.txt"
        if list_file.is_file():
            splits[split] = [_sample(root, safe_relative(text, f"{list_file}:{number}"))
                             for number, text in read_list(list_file)]
    if not splits:
        raise DataError(f"{lists}: no train.txt, val.txt or test.txt split list")
    problems: list[str] = []
    for samples in splits.values():
        for sample in samples:
            if sample.mask is not None and sample.mask.is_file():
                sample.mask = _index_mask(sample.mask, root, classes, cache, strict, problems)
    dataset = SegmentationDataset(root, "voc", classes, splits)
    if problems:
        raise DataError(problem_report(dataset, problems))
    return dataset


def _sample(root: Path, stem: PurePosixPath) -> Sample:
    return Sample(root / "JPEGImages" / f"{stem}.jpg", root / "SegmentationClass" / f"{stem}.png",
                  str(stem))


def _classes(root: Path, path: Path, names: list[str] | None,
             need_class_file: bool) -> tuple[ClassInfo, str | None]:
    """A labelmap.txt, class_names.txt or classes.json beside the folder (in it or in the
    folder given), else VOC's 21 classes; with the file's name when it gave colours."""
    from fcn_keras.annotations.classes import find_class_file, read_class_file

    found = find_class_file(root, path)
    if found is None:
        if need_class_file:
            raise DataError(f"{root}: no labelmap.txt (a CVAT / VOC segmentation mask export "
                            "has one beside SegmentationClass/)")
        return renamed(voc_classes(), names, str(root)), None
    strict = found.name if found.name != "class_names.txt" else None
    return renamed(read_class_file(found), names, str(found)), strict


def rgb_to_index(rgb: np.ndarray, colors: list[tuple[int, int, int]]) -> np.ndarray:
    """Map each pixel's colour to its index in `colors`; any other colour becomes the ignore
    index."""
    rgb = rgb[..., :3].astype(np.int32)
    keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    table = np.array([(r << 16) | (g << 8) | b for r, g, b in colors], dtype=np.int32)
    order = np.argsort(table)
    position = np.clip(np.searchsorted(table[order], keys), 0, len(table) - 1)
    found = table[order][position] == keys
    return np.where(found, order[position], IGNORE_INDEX).astype(np.uint8)


def _index_mask(mask: Path, root: Path, classes: ClassInfo, cache: str,
                strict: str | None, problems: list[str]) -> Path:
    """Palette and grey masks are used in place; an RGB mask is converted once into the cache
    (created only then, so a read-only VOC folder with palette masks works). With `strict` (the
    name of the class file that gave the colours) a colour outside it is a problem, not
    ignored: only VOC's own boundary colour means 'ignore'."""
    try:
        with Image.open(mask) as image:
            if image.mode not in ("RGB", "RGBA"):
                return mask
            target = root / CACHE_DIR / cache / f"{mask.stem}.png"
            if is_fresh(target, mask.stat().st_mtime):
                return target
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        return mask  # reported by validation with the file's name
    index = rgb_to_index(rgb, classes.colors)
    if strict is not None:
        unknown = {tuple(int(v) for v in c) for c in rgb[index == IGNORE_INDEX].reshape(-1, 3)}
        unknown.discard(VOC_BOUNDARY)
        if unknown:
            shown = ", ".join(str(c) for c in sorted(unknown)[:5])
            problems.append(f"{display(mask, root)}: colour(s) {shown} are not in {strict}")
            return mask
    cache_dir(root, cache)
    write_mask(target, index, classes.palette())
    return target
