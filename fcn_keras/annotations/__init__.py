"""Annotations from the tools people label with, turned into class-index masks.

One module per format reads its files into the same records (`records.AnnotatedImage`: an image
name and its `Region`s, each a shape and a class name); everything after that is shared:

- `via`, `coco`, `labelme`, `cvat` (CVAT for images 1.1 XML), `cvat_mask` (CVAT / VOC
  "Segmentation mask 1.1" folders: labelmap.txt + colour masks): the readers. Each has
  ``read(source, document) -> Annotations`` and never raises on bad input: it lists problems.
- `classes`: class name -> index (one rule for all formats), class files.
- `rasterize` (+ `rle`): regions -> pixels, each format by its own tool's pixel rule.
- `convert`: the converter: checks everything, then writes masks, classes.json and split lists
  (a large VIA file is read one entry at a time on each of those two passes: `stream`).
- The other way, masks -> annotations: `polygons` (a mask's objects as polygons, holes bridged
  in, that the converter turns back into the mask) and `via_writer` (a VIA 2.x project of them:
  predictions to correct in VIA, `fcn.py --image-file DIR --via-out FILE.json`).

A new format is one reader module plus a line in `READERS` (and in `detect_format`).
"""

from __future__ import annotations

from pathlib import Path

from fcn_keras.annotations import coco, cvat, cvat_mask, labelme, via
from fcn_keras.annotations.records import Annotations, Source, read_json
from fcn_keras.errors import DataError

READERS = {"via": via, "coco": coco, "labelme": labelme, "cvat": cvat, "cvat-mask": cvat_mask}
FORMATS = tuple(READERS)
JSON_FORMATS = ("via", "coco", "labelme")


def detect_format(path: Path, document=None) -> str:
    """The format of an annotation file or folder, from its contents."""
    if path.is_dir():
        if (path / "labelmap.txt").is_file() or (path / "SegmentationClass").is_dir():
            return "cvat-mask"
        return "labelme"
    if path.name == "labelmap.txt":
        return "cvat-mask"
    if path.suffix.lower() == ".xml":
        return "cvat"
    if isinstance(document, dict):
        if isinstance(document.get("images"), list) and "annotations" in document:
            return "coco"
        if "shapes" in document and ("imagePath" in document or "imageData" in document):
            return "labelme"
    return "via"


def read_source(source: Source, fmt: str = "auto") -> tuple[str, Annotations]:
    """(format, what its reader found) for one input; a file that cannot be loaded at all
    (missing, not JSON) raises DataError, everything else comes back as problems."""
    if fmt != "auto" and fmt not in READERS:
        raise DataError(f"unknown annotation format '{fmt}'; choose one of auto, "
                        f"{', '.join(FORMATS)}")
    document = None
    json_file = source.path.is_file() and source.path.suffix.lower() == ".json"
    if json_file and (fmt == "auto" or fmt in JSON_FORMATS):
        document = read_json(source.path)
    if fmt == "auto":
        fmt = detect_format(source.path, document)
    return fmt, READERS[fmt].read(source, document)
