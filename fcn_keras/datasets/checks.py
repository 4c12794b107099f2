"""Checks of a loaded dataset before anything is trained: every problem listed at once.

`validate_dataset` is cheap (headers, PNG checksums, JPEG end markers; no pixels decoded);
`check_mask_values` decodes the masks and also gives the pixel count of each class.

Long splits: a split of more than `FULL_CHECK_LIMIT` samples gets the full per-file checks on
`FULL_CHECK_LIMIT` of its samples, evenly spread (what is wrong with every file, such as masks
of the wrong mode or size, shows there), and cheap checks on all of them: every image and mask
exists and is not empty, from one directory listing per folder instead of opening each file.
The per-file checks of the others are left to the input pipeline, which makes them on each
file as it reads it and stops with a `DataError` naming the file (`pipeline.DataGenerator`
with `check_files`): the split's name is added to `dataset.deferred`. A split of 100,000
entries is then validated in seconds instead of a minute and more.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

from fcn_keras.datasets.base import Sample, SegmentationDataset, display
from fcn_keras.errors import DataError
from fcn_keras.io_utils import FULL_CHECK_LIMIT, MASK_MODES, check_image, mask_histogram, spread

MAX_LISTED = 20
N_WORKERS = min(8, os.cpu_count() or 1)


def validate_dataset(dataset: SegmentationDataset) -> None:
    """Report every missing or broken file and size mismatch at once (cheap checks only: no
    pixels are decoded). An empty split is only a note (VOC-style folders often ship an empty
    test.txt): a command that uses it stops at `SegmentationDataset.split` with its name.
    Splits longer than `FULL_CHECK_LIMIT`: see the module docstring."""
    problems = []
    listing = FolderListing()
    for name, samples in dataset.splits.items():
        if not samples:
            note = (f"split '{name}' is empty; commands that do not use it go on, a command "
                    "that does stops")
            if note not in dataset.notes:
                dataset.notes.append(note)
        fully = spread(samples, FULL_CHECK_LIMIT)
        if len(fully) < len(samples):
            dataset.deferred.add(name)
            opened = {id(sample) for sample in fully}
            for sample in samples:
                if id(sample) not in opened:
                    problems.extend(_listed_problems(sample, dataset.root, listing))
        with ThreadPoolExecutor(N_WORKERS) as pool:
            for found in bounded_map(pool, lambda s: _sample_problems(s, dataset.root),
                                     fully):
                problems.extend(found)
    if problems:
        raise DataError(problem_report(dataset, problems))


class FolderListing:
    """The files of each folder and their sizes, from one `os.scandir` per folder: for a list of
    100,000 entries, one directory read instead of a `stat` (or an open) per entry."""

    def __init__(self):
        self.folders: dict[str, dict[str, int]] = {}

    def size(self, path: Path) -> int | None:
        """The size of the file `path` (following links), None if there is no such file."""
        directory, name = os.path.split(os.fspath(path))   # no Path objects: 100,000 of them
        folder = self.folders.get(directory)
        if folder is None:
            folder = self.folders[directory] = {}
            try:
                with os.scandir(directory or os.curdir) as entries:
                    for entry in entries:
                        try:
                            if entry.is_file():
                                folder[entry.name] = entry.stat().st_size
                        except OSError:   # a link to nowhere, a file gone meanwhile
                            pass
            except (OSError, ValueError):
                pass
        return folder.get(name)


def _listed_problems(sample: Sample, root: Path, listing: FolderListing) -> list[str]:
    """The cheap checks of one sample of a long split: its image and mask exist and hold bytes."""
    problems = []
    for path, what in ((sample.image, "image"), (sample.mask, "mask")):
        if path is None:
            continue
        size = listing.size(path)
        if size is None:
            reason = "image not found" if what == "image" else "mask file not found"
        elif size == 0:
            reason = "empty image file (0 bytes)"
        else:
            continue
        problems.append(f"{display(path, root)}: {reason}")
    return problems


def bounded_map(pool, function, items, chunk: int = 1024):
    """`pool.map(function, items)` fed `chunk` items at a time: `Executor.map` submits every
    item at once, one pending future each, which for a list of 100,000 entries is memory that
    grows with the list for no gain."""
    for start in range(0, len(items), chunk):
        yield from pool.map(function, items[start:start + chunk])


def check_mask_values(dataset: SegmentationDataset, split: str,
                      max_files: int | None = None) -> np.ndarray:
    """Decode the masks of `split` and refuse values that are neither a class nor the ignore index.

    Returns the pixel count of each class over the checked masks (ignored pixels left out), which
    is what class weighting needs. `max_files` checks only the first masks of a large split.
    """
    samples = [s for s in dataset.split(split) if s.mask is not None][:max_files]
    n_classes, ignore = dataset.n_classes, dataset.ignore_index
    counts = np.zeros(n_classes, dtype=np.int64)
    problems = []
    with ThreadPoolExecutor(N_WORKERS) as pool:
        histograms = bounded_map(pool, lambda s: mask_histogram(s.mask), samples)
        for sample, histogram in zip(samples, histograms):
            values = np.flatnonzero(histogram)
            bad = [int(v) for v in values if v >= n_classes and v != ignore]
            if bad:
                problems.append(f"{display(sample.mask, dataset.root)}: values "
                                f"{_short_list(bad)} (classes are 0..{n_classes - 1}, "
                                f"ignore index {ignore})")
            counts += histogram[:n_classes]
    if problems:
        raise DataError(problem_report(dataset, problems, f"split '{split}': "))
    return counts


def problem_report(dataset: SegmentationDataset, problems: list[str], prefix: str = "") -> str:
    lines = problems[:MAX_LISTED]
    if len(problems) > MAX_LISTED:
        lines.append(f"and {len(problems) - MAX_LISTED} more")
    return (f"{dataset.root} ({dataset.format} dataset): {prefix}{len(problems)} problem(s):\n  "
            + "\n  ".join(lines))


def _short_list(values: list) -> str:
    shown = ", ".join(str(v) for v in values[:10])
    return f"[{shown}{', ...' if len(values) > 10 else ''}]"


def _mask_header(path: Path) -> tuple[tuple[int, int], str]:
    """Size and mode of a mask, after the same cheap integrity checks as images."""
    try:
        if not path.exists():
            raise DataError("mask file not found")
        check_image(path, pipeline=False)
        with Image.open(path) as image:
            return image.size, image.mode
    except DataError as exc:
        raise DataError(_without_path(exc, path)) from None
    except (OSError, Image.DecompressionBombError, ValueError) as exc:
        raise DataError(f"not a readable mask image ({exc})") from None


def _without_path(exc: Exception, path: Path) -> str:
    text = str(exc)
    return text[len(f"{path}: "):] if text.startswith(f"{path}: ") else text


def _sample_problems(sample: Sample, root: Path) -> list[str]:
    problems = []
    image_name = display(sample.image, root)
    try:
        image_size = check_image(sample.image)
    except DataError as exc:
        image_size = None
        reason = "image not found" if not sample.image.exists() else \
            _without_path(exc, sample.image)
        problems.append(f"{image_name}: {reason}")
    if sample.mask is None:
        return problems
    mask_name = display(sample.mask, root)
    try:
        mask_size, mode = _mask_header(sample.mask)
    except DataError as exc:
        return problems + [f"{mask_name}: {exc}"]
    if mode not in MASK_MODES:
        problems.append(f"{mask_name}: mask has mode {mode}; expected a single-channel index "
                        "PNG (mode L or P, pixel = class index)")
    if image_size is not None and mask_size != image_size:
        problems.append(f"{mask_name}: mask is {mask_size[0]}x{mask_size[1]} but image "
                        f"{image_name} is {image_size[0]}x{image_size[1]} (width x height)")
    return problems
