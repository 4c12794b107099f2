"""The book's labels: pickled dictionaries filename -> HxWxC one-hot array
(`segmentation_train.npy`, ...), read only with `allow_pickle=True` and converted once to index
PNGs in `<root>/.fcn_cache/npy_masks/<label file stem>/` (argmax; pixels with no class set
become the ignore index)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

from fcn_keras.classes import IGNORE_INDEX, ClassInfo, voc_colormap
from fcn_keras.datasets import cache
from fcn_keras.datasets.base import (
    LoadOptions,
    Sample,
    SegmentationDataset,
    label_files,
    label_name,
    renamed,
    safe_relative,
)
from fcn_keras.errors import DataError


def looks_like(root: Path, options: LoadOptions) -> bool:
    return (root / label_name(options.train_labels, ".npy")).is_file()


def load(root: Path, options: LoadOptions) -> SegmentationDataset:
    files = label_files(root, options, ".npy", "book label files")
    for path in files.values():
        _check_pickle(path, options.allow_pickle)
    records = {}
    for split, path in files.items():
        folder = cache.cache_dir(root, "npy_masks", path.stem)
        request = {"source": cache.file_stamp(path)}
        mtime = path.stat().st_mtime

        def is_complete(manifest: dict, folder=folder, mtime=mtime) -> bool:
            return all(cache.is_fresh(folder / f"{e['stem']}.png", mtime)
                       for e in manifest["entries"])

        record = cache.read_manifest(folder / "manifest.json", request, is_complete)
        if record is None:
            record = cache.write_manifest(folder / "manifest.json", request,
                                          _convert(path, folder, _palette(root)))
        records[split] = (folder, record)
    depths = {record["n_classes"] for _, record in records.values()}
    if len(depths) != 1:
        raise DataError(f"{root}: the label files disagree on the number of classes "
                        f"({', '.join(str(d) for d in sorted(depths))})")
    classes = _classes(root, depths.pop(), options.names)
    splits = {split: [Sample(root / e["key"], folder / f"{e['stem']}.png", e["stem"])
                      for e in record["entries"]] for split, (folder, record) in records.items()}
    return SegmentationDataset(root, "npy", classes, splits)


def _header_dtype(path: Path) -> np.dtype | None:
    try:
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                return np.lib.format.read_array_header_1_0(handle)[2]
            if version == (2, 0):
                return np.lib.format.read_array_header_2_0(handle)[2]
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable .npy file ({exc})") from None
    return None


def _check_pickle(path: Path, allow_pickle: bool) -> None:
    dtype = _header_dtype(path)
    if dtype is not None and not dtype.hasobject:
        raise DataError(f"{path}: holds a plain {dtype} array, not the book's label dictionary "
                        "(filename -> one-hot mask)")
    if not allow_pickle:
        raise DataError(f"{path}: this file is a Python pickle (the book's label dictionary); "
                        "loading a pickle can run arbitrary code, so it is read only with "
                        "--allow-pickle. Pass --allow-pickle if you trust the file.")


def _load_label_dict(path: Path) -> dict:
    try:
        data = np.load(path, allow_pickle=True)
        labels = data.flat[0] if data.dtype.hasobject and data.size == 1 else None
    except (OSError, ValueError, EOFError, pickle.UnpicklingError, ImportError,
            AttributeError) as exc:
        raise DataError(f"{path}: cannot read the label dictionary ({exc})") from None
    if not isinstance(labels, dict) or not labels:
        raise DataError(f"{path}: expected a non-empty dictionary filename -> HxWxC one-hot mask")
    return labels


def _one_hot_to_index(path: Path, key: str, one_hot) -> np.ndarray:
    one_hot = np.asarray(one_hot)
    if one_hot.ndim != 3 or not 1 <= one_hot.shape[-1] <= IGNORE_INDEX:
        raise DataError(f"{path}: label of '{key}' has shape {one_hot.shape}; expected "
                        f"height x width x classes (at most {IGNORE_INDEX} classes)")
    index = np.argmax(one_hot, axis=-1).astype(np.uint8)
    index[one_hot.max(axis=-1) <= 0] = IGNORE_INDEX
    return index


def _stem(key: str, where: str) -> str:
    relative = safe_relative(key, where)
    return str(relative.with_suffix("")) if relative.suffix else str(relative)


def _convert(path: Path, folder: Path, palette: list[int]) -> dict:
    labels = _load_label_dict(path)
    n_classes, entries = None, []
    for key, one_hot in labels.items():
        key = str(key)
        stem = _stem(key, f"{path}: key")
        index = _one_hot_to_index(path, key, one_hot)
        depth = np.shape(one_hot)[-1]
        if n_classes not in (None, depth):
            raise DataError(f"{path}: label of '{key}' has {depth} classes, others {n_classes}")
        n_classes = depth
        cache.write_mask(folder / f"{stem}.png", index, palette)
        entries.append({"key": key, "stem": stem})
    return {"n_classes": n_classes, "entries": entries}


def _palette(root: Path) -> list[int]:
    """The colours of classes.json if there is one, else VOC's, with the ignore index white."""
    if (root / "classes.json").is_file():
        return ClassInfo.load(root / "classes.json").palette()
    palette = [value for color in voc_colormap(256) for value in color]
    palette[3 * IGNORE_INDEX:3 * IGNORE_INDEX + 3] = [255, 255, 255]
    return palette


def _classes(root: Path, n_classes: int, names: list[str] | None) -> ClassInfo:
    path = root / "classes.json"
    if path.is_file():
        info = ClassInfo.load(path)
        if info.n_classes != n_classes:
            raise DataError(f"{path}: {info.n_classes} classes but the labels have {n_classes}")
        return renamed(info, names, str(path))
    default = ["background"] + [f"class {i}" for i in range(1, n_classes)]
    return renamed(ClassInfo(default), names, str(root))
