"""What every dataset layout gives back, and the small rules they share.

A layout module turns a folder into a `SegmentationDataset`: image files, single-channel index
masks (pixel = class index, `ClassInfo.ignore_index` = ignore) and one `ClassInfo`, split into
train / val / test. The helpers here are the rules that must not differ between layouts: how a
list file is read, which paths it may name, how `--classes` renames a layout's classes, and how
`val` is held out of `train`.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from fcn_keras.classes import ClassInfo
from fcn_keras.errors import DataError

SPLITS = ("train", "val", "test")


class Sample:
    """One image and its index mask (None for an unlabelled test image).

    The paths are kept as strings and handed out as `Path`s: a `Path` holds its parts as well
    as its text (about 360 bytes against 100), and a split list of 100,000 pairs held 73 MB of
    them (docs/bad-input.md, "Long input lists")."""

    __slots__ = ("_image", "_mask", "stem")

    def __init__(self, image, mask, stem: str):
        self._image = os.fspath(image)
        self._mask = None if mask is None else os.fspath(mask)
        self.stem = stem

    @property
    def image(self) -> Path:
        return Path(self._image)

    @property
    def mask(self) -> Path | None:
        return None if self._mask is None else Path(self._mask)

    @mask.setter
    def mask(self, value) -> None:
        self._mask = None if value is None else os.fspath(value)

    def __eq__(self, other) -> bool:
        if not isinstance(other, Sample):
            return NotImplemented
        return (self._image, self._mask, self.stem) == (other._image, other._mask, other.stem)

    __hash__ = None   # mutable (`mask`), as the dataclass it replaces

    def __repr__(self) -> str:
        return f"Sample(image={self.image!r}, mask={self.mask!r}, stem={self.stem!r})"


@dataclass
class SegmentationDataset:
    """A dataset in any layout, as image/mask pairs per split (keys among train, val, test)."""

    root: Path
    format: str
    classes: ClassInfo
    splits: dict[str, list[Sample]]
    notes: list[str] = field(default_factory=list)
    # Splits whose per-file checks (headers, checksums, sizes) validation left to the input
    # pipeline, which makes them as it reads each file (`datasets.checks.FULL_CHECK_LIMIT`).
    deferred: set[str] = field(default_factory=set)

    @property
    def n_classes(self) -> int:
        return self.classes.n_classes

    @property
    def ignore_index(self) -> int:
        return self.classes.ignore_index

    def split(self, name: str) -> list[Sample]:
        samples = self.splits.get(name)
        if not samples:
            available = ", ".join(f"{key} ({len(value)})" for key, value in self.splits.items()
                                  if value) or "none"
            state = "is empty" if name in self.splits else "does not exist"
            raise DataError(f"{self.root} ({self.format} dataset): split '{name}' {state}; "
                            f"available splits: {available}")
        return samples

    def summary(self) -> str:
        counts = ", ".join(f"{name} {len(samples)}" for name, samples in self.splits.items())
        return (f"{self.format} dataset {self.root}: {self.n_classes} classes "
                f"(ignore index {self.ignore_index}); {counts}")


@dataclass
class LoadOptions:
    """What `load_dataset` passes to every layout's `load(root, options)`.

    `names`: the `--classes` names, already split (None: the layout's own). `train_labels` /
    `test_labels`: the book's label files (VIA JSON or pickled `.npy`; either suffix names
    either). `attribute`: the VIA region attribute holding the class.
    """

    names: list[str] | None = None
    attribute: str | None = None
    allow_pickle: bool = False
    train_labels: str = "segmentation_train.json"
    test_labels: str = "segmentation_test.json"


def renamed(info: ClassInfo, names: list[str] | None, origin: str) -> ClassInfo:
    """A layout's classes under the `--classes` names, which must be as many (CamVid's class 0
    is Sky, so nothing is added or assumed)."""
    if names is None:
        return info
    if len(names) != info.n_classes:
        raise DataError(f"{origin}: {len(names)} class names given ({', '.join(names)}) but the "
                        f"dataset has {info.n_classes} classes ({', '.join(info.names)})")
    return ClassInfo(list(names), list(info.colors), info.ignore_index)


def safe_relative(entry: str, where: str) -> PurePosixPath:
    """A list entry as a path inside the data folder; absolute paths and '..' are refused."""
    path = PurePosixPath(entry.strip().replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise DataError(f"{where}: '{entry}' points outside the data folder (absolute paths "
                        "and '..' are not allowed in dataset lists)")
    if not path.parts:
        raise DataError(f"{where}: empty path")
    return path


def read_list(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of each non-blank, non-comment line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read list file ({exc})") from None
    return [(number, line.strip()) for number, line in enumerate(lines, 1)
            if line.strip() and not line.strip().startswith("#")]


def label_files(root: Path, options: LoadOptions, suffix: str, what: str,
                hint: str = "") -> dict[str, Path]:
    """The book's per-split label files that exist, by split: `train_labels`, the same name with
    `val` for the last `train` (`segmentation_train` -> `segmentation_val`; a name without
    `train` gets `_val`), and `test_labels`, each with `suffix`. Neither a train nor a test file:
    DataError "no `what`"."""
    train = label_name(options.train_labels, suffix)
    before, found, after = train.stem.rpartition("train")
    val_stem = before + "val" + after if found else train.stem + "_val"
    names = {"train": train, "val": train.with_name(val_stem + suffix),
             "test": label_name(options.test_labels, suffix)}
    files = {split: root / safe_relative(str(name), "labels file")
             for split, name in names.items()}
    files = {split: path for split, path in files.items() if path.is_file()}
    if "train" not in files and "test" not in files:
        raise DataError(f"{root}: no {what} ({names['train']} or {names['test']}){hint}")
    return files


def label_name(name: str, suffix: str) -> PurePosixPath:
    """A `--train-labels` / `--test-labels` name with `suffix` (either suffix names either)."""
    return PurePosixPath(name.replace("\\", "/")).with_suffix(suffix)


def mark_unlabelled_test(dataset: SegmentationDataset) -> None:
    """A test list whose masks are all absent (VOC's test release) is an unlabelled test set,
    not an error: its samples get `mask=None`."""
    samples = dataset.splits.get("test")
    if samples and not any(s.mask is not None and s.mask.exists() for s in samples):
        dataset.splits["test"] = [Sample(s.image, None, s.stem) for s in samples]


def _stable_fraction(stem: str) -> float:
    digest = hashlib.sha256(stem.encode("utf-8")).hexdigest()
    return int(digest[:13], 16) / 16 ** 13


def _holdout(samples: list[Sample], fraction: float) -> tuple[list[Sample], list[Sample]]:
    if fraction <= 0 or len(samples) < 2:
        return samples, []
    chosen = {s.stem for s in samples if _stable_fraction(s.stem) < fraction}
    ranked = sorted({s.stem for s in samples}, key=_stable_fraction)
    if not chosen:
        chosen = {ranked[0]}
    if len(chosen) >= len(ranked):
        chosen = set(ranked[:-1])
    train = [s for s in samples if s.stem not in chosen]
    return train, [s for s in samples if s.stem in chosen]


def add_holdout(dataset: SegmentationDataset, fraction: float) -> None:
    """Without a val list, val is about `fraction` of the train stems, each chosen by a stable
    hash of its own name (adding images does not reshuffle val); they leave train."""
    if "val" in dataset.splits or not dataset.splits.get("train"):
        return
    train, val = _holdout(dataset.splits["train"], fraction)
    if val:
        dataset.splits = {"train": train, "val": val,
                          **{k: v for k, v in dataset.splits.items() if k != "train"}}


def display(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)
