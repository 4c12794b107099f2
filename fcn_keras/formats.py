"""Dataset readers: every supported layout becomes one `SegmentationDataset` of (image, mask) pairs.

Downstream code (the tf.data pipeline, evaluation, reports) never looks at a layout again: it gets
image files, single-channel index masks (pixel = class index, `classes.ignore_index` = ignore)
and one `ClassInfo`. Layouts whose labels are not index PNGs on disk are converted once into a
cache and re-used while their sources are unchanged:

- **folder** (native): `images/<stem>.*`, `masks/<stem>.png` (mode L or P), `classes.json`,
  `train.txt` / `val.txt` / `test.txt` (one stem a line).
- **voc**: `JPEGImages/`, `SegmentationClass/`, `ImageSets/Segmentation/{train,val}.txt`; the
  path may also be `VOCdevkit` or its parent. Palette masks are read in place (PIL gives their
  indices); RGB masks are mapped through the VOC colours once into
  `<root>/.fcn_cache/SegmentationClassIndex/` (unknown colours, including the boundary colour
  224,224,192, become 255 = ignore).
- **camvid** (SegNet layout): `train.txt` / `val.txt` / `test.txt` of `image mask` pairs, index
  masks, 11 classes with void (11) ignored. `classes.json` in the folder overrides the classes.
- **via** (the book's layout): images plus `segmentation_train.json` / `segmentation_test.json`
  (and `segmentation_val.json` if present), converted by `fcn_keras.annotations.convert.convert_via` into
  `<root>/masks/`; a second load re-uses those masks while the JSON files are unchanged.
- **npy** (the book's labels): pickled dictionaries filename -> HxWxC one-hot array, read only
  with `allow_pickle=True` and converted once to index PNGs in `<root>/.fcn_cache/npy_masks/`
  (argmax; pixels with no class set become 255 = ignore).

Splits: `train`, `val` and `test` come from the layout's list or label files when present. When a
layout has training data but no validation list, `val` is a deterministic holdout of about
`val_fraction` of the training stems (a stem goes to `val` when a stable hash of its name falls
below `val_fraction`; at least one image, never all of them) and those stems leave `train`. The
choice of a stem never depends on the other stems, so adding images does not reshuffle `val`.
A test list whose masks are all absent (VOC's test release) gives samples with `mask=None`.

Paths in list and label files must stay inside the data folder: absolute paths and `..` are
refused, except SegNet's absolute paths (`/SegNet/CamVid/train/x.png`), which are mapped to their
last two components inside the data folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image

from fcn_keras.classes import ClassInfo, camvid_classes, voc_classes, voc_colormap
from fcn_keras.errors import ConfigError, DataError
from fcn_keras.io_utils import atomic_write_text, check_image, read_index_mask, write_index_png

FORMATS = ("via", "folder", "voc", "camvid", "npy", "coco", "labelme", "cvat", "cvat-mask")
ANNOTATION_FORMATS = ("coco", "labelme", "cvat")
SPLITS = ("train", "val", "test")
CACHE_DIR = ".fcn_cache"
MAX_LISTED = 20
MASK_CHECK_LIMIT = 2000
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm")
MASK_MODES = ("L", "P", "I", "I;16", "1")
VOC_BOUNDARY = (224, 224, 192)
N_WORKERS = min(8, os.cpu_count() or 1)

FORMAT_HELP = """\
  via:    images plus VIA JSON annotations (segmentation_train.json, segmentation_test.json)
  npy:    images plus the book's pickled labels (segmentation_train.npy; needs --allow-pickle)
  folder: images/ and masks/ folders, classes.json, train.txt/val.txt/test.txt (one stem a line)
  voc:    JPEGImages/, SegmentationClass/, ImageSets/Segmentation/train.txt (or VOCdevkit/)
  camvid: train.txt/val.txt/test.txt of 'image_path mask_path' lines (SegNet layout)
  coco:   annotations/*.json (COCO instances) and images/
  cvat:   annotations.xml (CVAT for images 1.1) and images/
  labelme: LabelMe .json files (in the folder, or in train/, val/, test/)
  cvat-mask: a VOC layout with labelmap.txt (CVAT's "Segmentation mask 1.1" export)"""


@dataclass
class Sample:
    """One image and its index mask (None for an unlabelled test image)."""

    image: Path
    mask: Path | None
    stem: str


@dataclass
class SegmentationDataset:
    """A dataset in any layout, as image/mask pairs per split (keys among train, val, test)."""

    root: Path
    format: str
    classes: ClassInfo
    splits: dict[str, list[Sample]]
    notes: list[str] = field(default_factory=list)

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


# ---------------------------------------------------------------------------------------------
# Entry points


def detect_format(data_path, train_labels: str = "segmentation_train.json") -> str:
    """The layout of `data_path` from its contents: 'via', 'npy', 'folder', 'voc' or 'camvid'."""
    root = Path(data_path)
    if not root.is_dir():
        raise DataError(f"{root}: data path is not a folder")
    if _voc_root(root) is not None:
        return "voc"
    if _is_segnet(root):
        return "camvid"
    if (root / _labels_name(train_labels, ".json")).is_file():
        return "via"
    if (root / _labels_name(train_labels, ".npy")).is_file():
        return "npy"
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return "folder"
    from fcn_keras.annotations.folders import looks_like
    annotated = looks_like(root)
    if annotated is not None:
        return annotated
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    shown = ", ".join(found[:12]) + (f" and {len(found) - 12} more" if len(found) > 12 else "")
    raise DataError(f"{root}: cannot tell the dataset format (found: {shown or 'nothing'}). "
                    f"Expected one of:\n{FORMAT_HELP}\nPass --data-format to choose one.")


def load_dataset(data_path, data_format: str = "auto", allow_pickle: bool = False,
                 train_labels: str = "segmentation_train.json",
                 test_labels: str = "segmentation_test.json", val_fraction: float = 0.1,
                 classes=None, attribute: str | None = None,
                 validate: bool = True) -> SegmentationDataset:
    """Read any supported layout (see the module docstring) as one `SegmentationDataset`.

    `classes`: class names (a list, a comma-separated string or a `ClassInfo`): for VIA the
    converter's classes (background first); for the other layouts new names for the layout's
    classes, which must have the same count. `attribute`: the VIA region attribute holding the
    class. `train_labels` / `test_labels` name the VIA JSON or book `.npy` files (either suffix
    works for either layout); the validation file is the same name with `train` replaced by `val`.

    With `validate` (the default) every split is checked before anything is trained: missing,
    empty, truncated or undecodable files (`io_utils.check_image`: headers, PNG checksums, JPEG
    end markers; no pixels decoded), image/mask size mismatches and empty splits are reported
    together, and the mask values of each split of at most 2000 samples are decoded and checked
    by `check_mask_values` (a larger split, such as a full VOC-augmented set, would take minutes;
    call `check_mask_values` yourself for it).
    """
    root = Path(data_path)
    if not root.is_dir():
        raise DataError(f"{root}: data path is not a folder")
    fmt = detect_format(root, train_labels) if data_format == "auto" else data_format
    if fmt not in FORMATS:
        raise DataError(f"unknown data format '{fmt}'; choose one of auto, {', '.join(FORMATS)}")
    names = _class_names(classes)
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if fmt == "via":
        dataset = _load_via(root, train_labels, test_labels, names, attribute)
    elif fmt == "npy":
        dataset = _load_npy(root, train_labels, test_labels, names, allow_pickle)
    elif fmt == "folder":
        dataset = _load_folder(root, names)
    elif fmt in ("voc", "cvat-mask"):
        dataset = _load_voc(root, names, need_class_file=fmt == "cvat-mask")
    elif fmt in ANNOTATION_FORMATS:
        dataset = _load_annotated(root, fmt, names, attribute)
    else:
        dataset = _load_camvid(root, names)
    _add_holdout(dataset, val_fraction)
    if validate:
        validate_dataset(dataset)
        for name, samples in dataset.splits.items():
            if samples and len(samples) <= MASK_CHECK_LIMIT:
                check_mask_values(dataset, name)
    for note in dataset.notes:
        print(f"note: {note}", file=sys.stderr)
    return dataset


def validate_dataset(dataset: SegmentationDataset) -> None:
    """Report every missing or broken file and size mismatch at once (cheap checks only: no
    pixels are decoded). An empty split is only a note (VOC-style folders often ship an empty
    test.txt): a command that uses it stops at `SegmentationDataset.split` with its name."""
    problems = []
    for name, samples in dataset.splits.items():
        if not samples:
            note = (f"split '{name}' is empty; commands that do not use it go on, a command "
                    "that does stops")
            if note not in dataset.notes:
                dataset.notes.append(note)
        with ThreadPoolExecutor(N_WORKERS) as pool:
            for found in bounded_map(pool, lambda s: _sample_problems(s, dataset.root),
                                     samples):
                problems.extend(found)
    if problems:
        raise DataError(_problem_report(dataset, problems))


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
        for sample, histogram in zip(samples, bounded_map(pool, _mask_histogram, samples)):
            values = np.flatnonzero(histogram)
            bad = [int(v) for v in values if v >= n_classes and v != ignore]
            if bad:
                problems.append(f"{_display(sample.mask, dataset.root)}: values "
                                f"{_short_list(bad)} (classes are 0..{n_classes - 1}, "
                                f"ignore index {ignore})")
            counts += histogram[:n_classes]
    if problems:
        raise DataError(_problem_report(dataset, problems, f"split '{split}': "))
    return counts


# ---------------------------------------------------------------------------------------------
# Shared helpers


def _class_names(classes) -> list[str] | None:
    if classes is None:
        return None
    if isinstance(classes, ClassInfo):
        return list(classes.names)
    if isinstance(classes, str):
        classes = [name.strip() for name in classes.split(",")]
    names = [str(name) for name in classes]
    if not names or any(not name for name in names):
        raise DataError(f"class names must be non-empty, got {classes!r}")
    return names


def _renamed(info: ClassInfo, names: list[str] | None, origin: str) -> ClassInfo:
    if names is None:
        return info
    if len(names) != info.n_classes:
        raise DataError(f"{origin}: {len(names)} class names given ({', '.join(names)}) but the "
                        f"dataset has {info.n_classes} classes ({', '.join(info.names)})")
    return ClassInfo(list(names), list(info.colors), info.ignore_index)


def _safe_relative(entry: str, where: str) -> PurePosixPath:
    """A list entry as a path inside the data folder; absolute paths and '..' are refused."""
    path = PurePosixPath(entry.strip().replace("\\", "/"))
    if path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        raise DataError(f"{where}: '{entry}' points outside the data folder (absolute paths "
                        "and '..' are not allowed in dataset lists)")
    if not path.parts:
        raise DataError(f"{where}: empty path")
    return path


def _read_list(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of each non-blank, non-comment line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read list file ({exc})") from None
    return [(number, line.strip()) for number, line in enumerate(lines, 1)
            if line.strip() and not line.strip().startswith("#")]


def _labels_name(name: str, suffix: str) -> str:
    return str(PurePosixPath(name.replace("\\", "/")).with_suffix(suffix))


def _val_labels_name(train_name: str) -> str:
    path = PurePosixPath(train_name.replace("\\", "/"))
    stem = path.stem
    stem = stem[::-1].replace("niart", "lav", 1)[::-1] if "train" in stem else stem + "_val"
    return str(path.with_name(stem + path.suffix))


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


def _add_holdout(dataset: SegmentationDataset, fraction: float) -> None:
    if "val" in dataset.splits or not dataset.splits.get("train"):
        return
    train, val = _holdout(dataset.splits["train"], fraction)
    if val:
        dataset.splits = {"train": train, "val": val,
                          **{k: v for k, v in dataset.splits.items() if k != "train"}}


def _unlabelled_test(samples: list[Sample]) -> list[Sample]:
    """A test list whose masks are all absent is an unlabelled test set, not an error."""
    if samples and not any(s.mask is not None and s.mask.exists() for s in samples):
        return [Sample(s.image, None, s.stem) for s in samples]
    return samples


def _cache_dir(root: Path, *parts: str) -> Path:
    path = root.joinpath(CACHE_DIR, *parts)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"{path}: cannot create the conversion cache ({exc}); copy the dataset "
                        "to a writable folder") from None
    return path


def _write_mask(path: Path, mask: np.ndarray, palette: list[int]) -> None:
    try:
        write_index_png(path, mask, palette)
    except OSError as exc:
        raise DataError(f"{path}: cannot write converted mask ({exc})") from None


def _is_fresh(target: Path, source_mtime: float) -> bool:
    try:
        return target.stat().st_mtime >= source_mtime
    except OSError:
        return False


def _display(path: Path, root: Path) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return str(path)


def _short_list(values: list) -> str:
    shown = ", ".join(str(v) for v in values[:10])
    return f"[{shown}{', ...' if len(values) > 10 else ''}]"


def _problem_report(dataset: SegmentationDataset, problems: list[str], prefix: str = "") -> str:
    lines = problems[:MAX_LISTED]
    if len(problems) > MAX_LISTED:
        lines.append(f"and {len(problems) - MAX_LISTED} more")
    return (f"{dataset.root} ({dataset.format} dataset): {prefix}{len(problems)} problem(s):\n  "
            + "\n  ".join(lines))


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
    image_name = _display(sample.image, root)
    try:
        image_size = check_image(sample.image)
    except DataError as exc:
        image_size = None
        reason = "image not found" if not sample.image.exists() else \
            _without_path(exc, sample.image)
        problems.append(f"{image_name}: {reason}")
    if sample.mask is None:
        return problems
    mask_name = _display(sample.mask, root)
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


def _mask_histogram(sample: Sample) -> np.ndarray:
    return np.bincount(read_index_mask(sample.mask).ravel(), minlength=256)


# ---------------------------------------------------------------------------------------------
# folder


class _ImageFinder:
    """Finds `images/<stem>.*` with one directory listing per folder instead of a glob per stem."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.listings: dict[Path, dict[str, list[Path]]] = {}

    def _listing(self, directory: Path) -> dict[str, list[Path]]:
        if directory not in self.listings:
            found: dict[str, list[Path]] = {}
            if directory.is_dir():
                for path in directory.iterdir():
                    if path.is_file() and "." in path.name:
                        found.setdefault(path.name.rsplit(".", 1)[0], []).append(path)
            self.listings[directory] = found
        return self.listings[directory]

    def find(self, stem: PurePosixPath) -> Path:
        candidates = self._listing(self.folder / stem.parent).get(stem.name, [])
        known = [p for p in candidates if p.suffix.lower() in IMAGE_EXTENSIONS]
        ordered = sorted(known, key=lambda p: IMAGE_EXTENSIONS.index(p.suffix.lower())) \
            or sorted(candidates)
        return ordered[0] if ordered else self.folder / stem.parent / f"{stem.name}.*"

    def stems(self) -> list[str]:
        return sorted(self._listing(self.folder))


def _folder_classes(root: Path, names: list[str] | None) -> ClassInfo:
    path = root / "classes.json"
    if path.is_file():
        return _renamed(ClassInfo.load(path), names, str(path))
    if names is None:
        raise DataError(f"{path}: not found; a folder dataset needs classes.json "
                        '({"names": [...], "colors": [...], "ignore_index": 255}) or --classes')
    return ClassInfo(names)


def _load_folder(root: Path, names: list[str] | None) -> SegmentationDataset:
    classes = _folder_classes(root, names)
    finder = _ImageFinder(root / "images")
    stems = {}
    for split in SPLITS:
        path = root / f"{split}.txt"
        if path.is_file():
            stems[split] = [_safe_relative(text, f"{path}:{number}")
                            for number, text in _read_list(path)]
    if "train" not in stems:
        listed = {str(s) for split_stems in stems.values() for s in split_stems}
        stems = {"train": [PurePosixPath(s) for s in finder.stems()
                           if s not in listed and (root / "masks" / f"{s}.png").is_file()],
                 **stems}
    splits = {split: [Sample(finder.find(stem), root / "masks" / f"{stem}.png", str(stem))
                      for stem in split_stems] for split, split_stems in stems.items()}
    if "test" in splits:
        splits["test"] = _unlabelled_test(splits["test"])
    return SegmentationDataset(root, "folder", classes, splits)


# ---------------------------------------------------------------------------------------------
# voc


def _voc_root(path: Path) -> Path | None:
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


def _rgb_to_index(rgb: np.ndarray, colors: list[tuple[int, int, int]]) -> np.ndarray:
    """Map each pixel's colour to its index in `colors`; any other colour becomes 255."""
    rgb = rgb[..., :3].astype(np.int32)
    keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    table = np.array([(r << 16) | (g << 8) | b for r, g, b in colors], dtype=np.int32)
    order = np.argsort(table)
    position = np.clip(np.searchsorted(table[order], keys), 0, len(table) - 1)
    found = table[order][position] == keys
    return np.where(found, order[position], 255).astype(np.uint8)


def _voc_index_mask(mask: Path, root: Path, classes: ClassInfo, cache: str,
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
            if _is_fresh(target, mask.stat().st_mtime):
                return target
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        return mask  # reported by validation with the file's name
    index = _rgb_to_index(rgb, classes.colors)
    if strict is not None:
        unknown = {tuple(int(v) for v in c) for c in rgb[index == 255].reshape(-1, 3)}
        unknown.discard(VOC_BOUNDARY)
        if unknown:
            shown = ", ".join(str(c) for c in sorted(unknown)[:5])
            problems.append(f"{_display(mask, root)}: colour(s) {shown} are not in {strict}")
            return mask
    _cache_dir(root, cache)
    _write_mask(target, index, classes.palette())
    return target


def _voc_classes(root: Path, path: Path, names: list[str] | None,
                 need_class_file: bool) -> tuple[ClassInfo, str | None]:
    """A labelmap.txt, class_names.txt or classes.json beside the folder (in it or in the
    folder given), else VOC's 21 classes; with the file's name when it gave colours."""
    from fcn_keras.annotations.classes import find_class_file, read_class_file

    found = find_class_file(root, path)
    if found is None:
        if need_class_file:
            raise DataError(f"{root}: no labelmap.txt (a CVAT / VOC segmentation mask export "
                            "has one beside SegmentationClass/)")
        return _renamed(voc_classes(), names, str(root)), None
    strict = found.name if found.name != "class_names.txt" else None
    return _renamed(read_class_file(found), names, str(found)), strict


def _load_voc(path: Path, names: list[str] | None,
              need_class_file: bool = False) -> SegmentationDataset:
    root = _voc_root(path)
    if root is None:
        raise DataError(f"{path}: not a VOC folder; expected JPEGImages/, SegmentationClass/ "
                        "and ImageSets/Segmentation/ (in VOC2012/ or VOCdevkit/VOC2012/)")
    classes, strict = _voc_classes(root, path, names, need_class_file)
    cache = "SegmentationClassIndex" if strict is None else \
        "SegmentationClassIndex-" + hashlib.sha256(repr(classes.colors).encode()).hexdigest()[:8]
    lists = root / "ImageSets" / "Segmentation"
    splits = {}
    for split in SPLITS:
        list_file = lists / f"{split}.txt"
        if list_file.is_file():
            splits[split] = [_voc_sample(root, _safe_relative(text, f"{list_file}:{number}"))
                             for number, text in _read_list(list_file)]
    if not splits:
        raise DataError(f"{lists}: no train.txt, val.txt or test.txt split list")
    if "test" in splits:
        splits["test"] = _unlabelled_test(splits["test"])
    problems: list[str] = []
    for samples in splits.values():
        for sample in samples:
            if sample.mask is not None and sample.mask.is_file():
                sample.mask = _voc_index_mask(sample.mask, root, classes, cache, strict,
                                              problems)
    dataset = SegmentationDataset(root, "voc", classes, splits)
    if problems:
        raise DataError(_problem_report(dataset, problems))
    return dataset


def _voc_sample(root: Path, stem: PurePosixPath) -> Sample:
    return Sample(root / "JPEGImages" / f"{stem}.jpg", root / "SegmentationClass" / f"{stem}.png",
                  str(stem))


# ---------------------------------------------------------------------------------------------
# camvid (SegNet layout)


def _is_segnet(root: Path) -> bool:
    for split in SPLITS:
        path = root / f"{split}.txt"
        if path.is_file():
            try:
                entries = _read_list(path)
            except DataError:
                return False
            return bool(entries) and len(entries[0][1].split()) == 2
    return False


def _segnet_path(entry: str, root: Path, where: str) -> Path:
    """A SegNet list path inside `root`; SegNet's absolute paths keep their last two parts."""
    posix = entry.replace("\\", "/")
    if PurePosixPath(posix).is_absolute():
        normal = PurePosixPath(os.path.normpath(posix))
        try:
            return root / normal.relative_to(PurePosixPath(root.resolve().as_posix()))
        except ValueError:
            return root.joinpath(*normal.parts[1:][-2:])
    return root / _safe_relative(entry, where)


def _load_camvid(root: Path, names: list[str] | None) -> SegmentationDataset:
    path = root / "classes.json"
    classes = ClassInfo.load(path) if path.is_file() else camvid_classes()
    classes = _renamed(classes, names, str(root))
    splits = {}
    for split in SPLITS:
        list_file = root / f"{split}.txt"
        if list_file.is_file():
            splits[split] = [_segnet_sample(root, text, f"{list_file}:{number}")
                             for number, text in _read_list(list_file)]
    if not splits:
        raise DataError(f"{root}: not a CamVid (SegNet) folder; expected train.txt, val.txt or "
                        "test.txt with 'image_path mask_path' lines")
    if "test" in splits:
        splits["test"] = _unlabelled_test(splits["test"])
    return SegmentationDataset(root, "camvid", classes, splits)


def _segnet_sample(root: Path, text: str, where: str) -> Sample:
    fields = text.split()
    if len(fields) != 2:
        raise DataError(f"{where}: expected 'image_path mask_path', got '{text}'")
    image = _segnet_path(fields[0], root, where)
    return Sample(image, _segnet_path(fields[1], root, where), image.stem)


# ---------------------------------------------------------------------------------------------
# via (the book's layout, through the converter)


def _file_stamp(path: Path) -> dict:
    stat = path.stat()
    return {"name": path.name, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _via_files(root: Path, train_labels: str, test_labels: str) -> dict[str, Path]:
    train = _labels_name(train_labels, ".json")
    names = {"train": train, "val": _val_labels_name(train),
             "test": _labels_name(test_labels, ".json")}
    files = {}
    for split, name in names.items():
        path = root / _safe_relative(name, "labels file")
        if path.is_file():
            files[split] = path
    if "train" not in files and "test" not in files:
        raise DataError(f"{root}: no VIA annotations ({names['train']} or {names['test']}); "
                        "a VIA dataset holds the images and their VIA JSON files")
    return files


def _load_via(root: Path, train_labels: str, test_labels: str, names: list[str] | None,
              attribute: str | None) -> SegmentationDataset:
    files = _via_files(root, train_labels, test_labels)
    output_dir = root / "masks"
    manifest_path = root / CACHE_DIR / "via_manifest.json"
    classes_json = root / "classes.json"
    request = {"jsons": {split: _file_stamp(path) for split, path in files.items()},
               "classes": names, "attribute": attribute,
               "classes_json": _file_stamp(classes_json) if classes_json.is_file() else None}
    record = _cached_via(manifest_path, request, files, root, output_dir)
    if record is None:
        from fcn_keras.annotations.convert import convert_via
        given = _via_classes(root, names, output_dir)
        result = convert_via(list(files.values()), root, output_dir=output_dir, classes=given,
                             attribute=attribute, skip_missing=False, draw_order="area",
                             progress=False)
        classes = result.class_info
        record = {**_via_record(result, files, root), "class_info": classes.to_dict()}
        _cache_dir(root)
        atomic_write_text(manifest_path, json.dumps({**request, **record}) + "\n")
    else:
        saved = record["class_info"]
        classes = ClassInfo(saved["names"], saved["colors"], saved["ignore_index"])
    splits = {split: [Sample(root / record["images"][stem], root / record["masks"][stem], stem)
                      for stem in stems] for split, stems in record["splits"].items()}
    return SegmentationDataset(root, "via", classes, splits)


def _via_classes(root: Path, names: list[str] | None, output_dir: Path):
    """The classes to convert the VIA files with, so that training never renumbers masks a
    user converted (the book's two steps: `utils/generate_gt_segmentation.py --classes ...`,
    then `fcn.py --train` without --classes).

    The masks' own `classes.json` (beside them, written by the converter) comes first, then the
    dataset's `classes.json`, then the converter's default rule. `--classes` (`names`) and the
    dataset's file must name the classes in the masks' order, else a `ConfigError` names both
    orders and the file: renumbering is the converter's job, asked for explicitly."""
    masks_file, dataset_file = output_dir / "classes.json", root / "classes.json"
    saved = [(path, ClassInfo.load(path)) for path in (masks_file, dataset_file)
             if path.is_file()]
    if names is not None:
        from fcn_keras.annotations.classes import parse_classes
        wanted = parse_classes(names)
        for path, info in saved:
            if info.names != wanted.names:
                raise ConfigError(_classes_disagree(f"--classes {','.join(names)}", wanted,
                                                    path, info, root))
        return saved[0][1] if saved else names   # the file's colours with the same names
    if len(saved) == 2 and saved[0][1].names != saved[1][1].names:
        raise ConfigError(_classes_disagree(str(dataset_file), saved[1][1], *saved[0], root))
    return saved[0][1] if saved else None


def _classes_disagree(what: str, wanted: ClassInfo, path: Path, info: ClassInfo,
                      root: Path) -> str:
    return (f"{what} numbers the classes {', '.join(_numbered(wanted))}, but {path} (the "
            f"classes the masks in {path.parent} were converted with) numbers them "
            f"{', '.join(_numbered(info))}. Training keeps the masks' numbering: drop the "
            f"other order, or renumber on purpose with python utils/generate_gt_segmentation.py "
            f"-p {root} -j ... --classes ... (or delete {path} to convert afresh)")


def _numbered(info: ClassInfo) -> list[str]:
    return [f"{index}={name}" for index, name in enumerate(info.names)]


def _relative(path, root: Path) -> str:
    return os.path.relpath(Path(path).absolute(), root.absolute())


def _via_record(result, files: dict[str, Path], root: Path) -> dict:
    splits = {split: list(result.stems.get(path.stem, [])) for split, path in files.items()}
    stems = {stem for split_stems in splits.values() for stem in split_stems}
    return {"splits": splits,
            "images": {s: _relative(result.image_paths[s], root) for s in stems},
            "masks": {s: _relative(result.mask_paths[s], root) for s in stems}}


def _cached_via(manifest_path: Path, request: dict, files: dict[str, Path], root: Path,
                output_dir: Path) -> dict | None:
    """The previous conversion, if it was made from these very JSON files and options and its
    masks are all present and newer than the JSON files; otherwise None (convert again). A
    damaged manifest (cut short, edited, of another version) counts as none."""
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if any(manifest.get(key) != value for key, value in request.items()):
            return None
        newest = max(path.stat().st_mtime for path in files.values())
        masks = [root / rel for rel in manifest["masks"].values()]
        if not all(_is_fresh(path, newest) for path in [output_dir / "classes.json", *masks]):
            return None
        if ClassInfo.load(output_dir / "classes.json").to_dict() != \
                ClassInfo(**manifest["class_info"]).to_dict():
            return None   # the converter renumbered the masks since: read its classes again
        if not all(stem in manifest["images"] and stem in manifest["masks"]
                   for stems in manifest["splits"].values() for stem in stems):
            return None
    except (OSError, ValueError, AttributeError, TypeError, KeyError, DataError):
        return None
    return manifest


# ---------------------------------------------------------------------------------------------
# npy (the book's pickled one-hot dictionaries)


def _npy_files(root: Path, train_labels: str, test_labels: str) -> dict[str, Path]:
    train = _labels_name(train_labels, ".npy")
    names = {"train": train, "val": _val_labels_name(train),
             "test": _labels_name(test_labels, ".npy")}
    files = {split: root / _safe_relative(name, "labels file") for split, name in names.items()}
    files = {split: path for split, path in files.items() if path.is_file()}
    if "train" not in files and "test" not in files:
        raise DataError(f"{root}: no book label files ({names['train']} or {names['test']})")
    return files


def _npy_header_dtype(path: Path) -> np.dtype | None:
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
    dtype = _npy_header_dtype(path)
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
    if one_hot.ndim != 3 or not 1 <= one_hot.shape[-1] <= 255:
        raise DataError(f"{path}: label of '{key}' has shape {one_hot.shape}; expected "
                        "height x width x classes (at most 255 classes)")
    index = np.argmax(one_hot, axis=-1).astype(np.uint8)
    index[one_hot.max(axis=-1) <= 0] = 255
    return index


def _npy_stem(key: str, where: str) -> str:
    relative = _safe_relative(key, where)
    return str(relative.with_suffix("")) if relative.suffix else str(relative)


def _convert_npy(path: Path, cache: Path, palette: list[int]) -> dict:
    labels = _load_label_dict(path)
    n_classes, entries = None, []
    for key, one_hot in labels.items():
        key = str(key)
        stem = _npy_stem(key, f"{path}: key")
        index = _one_hot_to_index(path, key, one_hot)
        depth = np.shape(one_hot)[-1]
        if n_classes not in (None, depth):
            raise DataError(f"{path}: label of '{key}' has {depth} classes, others {n_classes}")
        n_classes = depth
        _write_mask(cache / f"{stem}.png", index, palette)
        entries.append({"key": key, "stem": stem})
    return {"source": _file_stamp(path), "n_classes": n_classes, "entries": entries}


def _cached_npy(manifest_path: Path, path: Path, cache: Path) -> dict | None:
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        if manifest.get("source") != _file_stamp(path):
            return None
        mtime = path.stat().st_mtime
        if not all(_is_fresh(cache / f"{e['stem']}.png", mtime) for e in manifest["entries"]):
            return None
    except (OSError, ValueError, AttributeError, TypeError, KeyError):   # damaged: none
        return None
    return manifest


def _npy_palette(root: Path) -> list[int]:
    """The colours of classes.json if there is one, else VOC's, with the ignore index white."""
    if (root / "classes.json").is_file():
        return ClassInfo.load(root / "classes.json").palette()
    palette = [value for color in voc_colormap(256) for value in color]
    palette[3 * 255:] = [255, 255, 255]
    return palette


def _npy_classes(root: Path, n_classes: int, names: list[str] | None) -> ClassInfo:
    path = root / "classes.json"
    if path.is_file():
        info = ClassInfo.load(path)
        if info.n_classes != n_classes:
            raise DataError(f"{path}: {info.n_classes} classes but the labels have {n_classes}")
        return _renamed(info, names, str(path))
    default = ["background"] + [f"class {i}" for i in range(1, n_classes)]
    return _renamed(ClassInfo(default), names, str(root))


def _load_npy(root: Path, train_labels: str, test_labels: str, names: list[str] | None,
              allow_pickle: bool) -> SegmentationDataset:
    files = _npy_files(root, train_labels, test_labels)
    for path in files.values():
        _check_pickle(path, allow_pickle)
    records = {}
    for split, path in files.items():
        cache = _cache_dir(root, "npy_masks", path.stem)
        manifest_path = cache / "manifest.json"
        record = _cached_npy(manifest_path, path, cache)
        if record is None:
            record = _convert_npy(path, cache, _npy_palette(root))
            atomic_write_text(manifest_path, json.dumps(record) + "\n")
        records[split] = (cache, record)
    depths = {record["n_classes"] for _, record in records.values()}
    if len(depths) != 1:
        raise DataError(f"{root}: the label files disagree on the number of classes "
                        f"({', '.join(str(d) for d in sorted(depths))})")
    classes = _npy_classes(root, depths.pop(), names)
    splits = {split: [Sample(root / e["key"], cache / f"{e['stem']}.png", e["stem"])
                      for e in record["entries"]] for split, (cache, record) in records.items()}
    return SegmentationDataset(root, "npy", classes, splits)


# ---------------------------------------------------------------------------------------------
# coco, labelme, cvat folders (through the converter; see fcn_keras.annotations.folders)


def _load_annotated(root: Path, fmt: str, names: list[str] | None,
                    attribute: str | None) -> SegmentationDataset:
    from fcn_keras.annotations import folders

    inputs, images = folders.annotation_inputs(root, fmt)
    manifest_path = root / CACHE_DIR / f"{fmt}_manifest.json"
    request = folders.manifest_request(inputs, names, attribute)
    record = folders.read_manifest(manifest_path, request, root)
    if record is None:
        from fcn_keras.annotations.convert import convert_annotations
        result = convert_annotations(inputs, images, root / CACHE_DIR / f"masks-{fmt}",
                                     classes=names, attribute=attribute, fmt=fmt)
        splits: dict[str, list[str]] = {}
        for list_name, stems in result.stems.items():
            splits.setdefault(folders.split_of(list_name), []).extend(stems)
        record = {"splits": splits, "class_info": result.class_info.to_dict(),
                  "images": {s: _relative(p, root) for s, p in result.image_paths.items()},
                  "masks": {s: _relative(p, root) for s, p in result.mask_paths.items()}}
        _cache_dir(root)
        atomic_write_text(manifest_path, json.dumps({**request, **record}) + "\n")
    saved = record["class_info"]
    classes = ClassInfo(saved["names"], saved["colors"], saved["ignore_index"])
    splits = {split: [Sample(root / record["images"][stem], root / record["masks"][stem], stem)
                      for stem in stems] for split, stems in record["splits"].items()}
    return SegmentationDataset(root, fmt, classes, splits)
