"""Class names, colours and the ignore index of a dataset.

Every dataset format ends up as one `ClassInfo`, so masks, palettes, reports and overlays all agree
on which index means what. It is stored as `classes.json`:
``{"names": [...], "colors": [[r, g, b], ...], "ignore_index": 255}``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from fcn_keras.errors import DataError
from fcn_keras.io_utils import atomic_write_text, voc_colormap

IGNORE_INDEX = 255   # the mask value no loss or metric looks at

VOC_CLASSES = [
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
    "cow", "diningtable", "dog", "horse", "motorbike", "person", "potted plant", "sheep", "sofa",
    "train", "tv/monitor",
]

CAMVID_CLASSES = [
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
    "Pedestrian", "Bicyclist",
]
CAMVID_COLORS = [
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
]
CAMVID_VOID_INDEX = 11


@dataclass
class ClassInfo:
    """Names and colours of the classes; index i of `names` is the pixel value i in a mask."""

    names: list[str]
    colors: list[tuple[int, int, int]] = field(default_factory=list)
    ignore_index: int = IGNORE_INDEX

    def __post_init__(self):
        if not self.colors:
            self.colors = voc_colormap(len(self.names))
        self.colors = [tuple(int(v) for v in c) for c in self.colors]
        if len(self.colors) != len(self.names):
            raise DataError(
                f"classes: {len(self.names)} names but {len(self.colors)} colours")

    @property
    def n_classes(self) -> int:
        return len(self.names)

    def palette(self) -> list[int]:
        """A 768-entry PIL palette: class colours first, the ignore index white, the rest black."""
        flat = [0] * 768
        for index, color in enumerate(self.colors):
            flat[3 * index:3 * index + 3] = color
        if 0 <= self.ignore_index < 256 and self.ignore_index >= len(self.colors):
            flat[3 * self.ignore_index:3 * self.ignore_index + 3] = (255, 255, 255)
        return flat

    def to_dict(self) -> dict:
        return {"names": list(self.names), "colors": [list(c) for c in self.colors],
                "ignore_index": self.ignore_index}

    def save(self, path: str | Path) -> None:
        atomic_write_text(path, json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "ClassInfo":
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise DataError(f"{path}: classes file not found") from None
        except (OSError, ValueError, RecursionError) as exc:   # bad UTF-8 or JSON
            raise DataError(f"{path}: not a readable JSON classes file ({exc})") from None
        names = data.get("names") if isinstance(data, dict) else None
        if not isinstance(names, list) or not names:
            raise DataError(f"{path}: expected {{\"names\": [...], \"colors\": [...]}} "
                            "with at least one class name")
        names = [str(n) for n in data["names"]]
        colors = data.get("colors") or []
        try:
            colors = [tuple(int(v) for v in c) for c in colors]
        except (TypeError, ValueError, OverflowError):   # OverflowError: int(inf)
            raise DataError(f"{path}: 'colors' must be a list of [r, g, b] lists") from None
        if colors and any(len(c) != 3 or not all(0 <= v <= 255 for v in c) for c in colors):
            raise DataError(f"{path}: 'colors' must be a list of [r, g, b] lists of 0..255")
        if len(names) > 255:
            raise DataError(f"{path}: {len(names)} classes; at most 255 fit in an 8-bit mask")
        ignore = data.get("ignore_index", IGNORE_INDEX)
        if isinstance(ignore, bool) or not isinstance(ignore, int) or not 0 <= ignore <= 255:
            raise DataError(f"{path}: 'ignore_index' must be an integer in 0..255 (a mask "
                            f"value), got {ignore!r}")
        try:
            return cls(names, colors, ignore)
        except DataError as exc:
            raise DataError(f"{path}: {exc}") from None


def voc_classes() -> ClassInfo:
    return ClassInfo(list(VOC_CLASSES), voc_colormap(len(VOC_CLASSES)), IGNORE_INDEX)


def camvid_classes() -> ClassInfo:
    return ClassInfo(list(CAMVID_CLASSES), list(CAMVID_COLORS), CAMVID_VOID_INDEX)


def parse_class_names(classes) -> list[str] | None:
    """`--classes` as a list of names: None, ``"a,b,c"`` (names stripped), a list of names or a
    `ClassInfo` (its names). What the names mean is the reader's rule: the annotation converter
    puts ``background`` first when it is missing (`annotations.classes.parse_classes`); a layout
    with classes of its own (VOC, CamVid, a folder's classes.json) takes them as new names for
    its classes, as many as it has (`datasets.base.renamed`)."""
    if classes is None:
        return None
    if isinstance(classes, ClassInfo):
        return list(classes.names)
    given = classes.split(",") if isinstance(classes, str) else list(classes)
    names = [str(name).strip() for name in given]
    if not names or any(not name for name in names):
        raise DataError(f"--classes: class names must be non-empty, got {classes!r}")
    return names
