"""LabelMe JSON (one file per image, or a folder of them) -> records.

``{"shapes": [{"label", "points": [[x, y], ...], "shape_type", "mask"?}], "imagePath",
"imageData", "imageHeight", "imageWidth"}``. ``imagePath`` is relative to the JSON file's folder
(LabelMe writes ``../images/a.jpg`` when they differ) and must stay inside the data folder.
``imageData`` (the image file's bytes, base64) is used when the image file is missing: its size
comes from its header and the converter writes it out beside the masks.

Shapes are drawn as labelme's own ``labelme2voc`` draws them (PIL, outline included; see
`rasterize`): ``polygon``, ``rectangle`` (two corners, any order), ``circle`` (centre and a point
on it) and ``mask`` (a PNG bitmap over the box of its two points). ``line``, ``linestrip``,
``point`` and ``points`` enclose nothing and are skipped with a count (labelme2voc paints them
10 pixels wide; a class mask should not). The label ``__ignore__`` paints the ignore index,
``_background_`` paints 0. In a folder, JSON files that are not LabelMe files (no ``shapes``)
are skipped with a note.
"""

from __future__ import annotations

import base64
import binascii
import io
from pathlib import Path

import numpy as np
from PIL import Image

from fcn_keras.annotations.records import (
    AnnotatedImage,
    Annotations,
    Bad,
    Region,
    describe,
    inside_name,
    numbers,
    read_json,
    relative_folder,
)
from fcn_keras.errors import DataError

AREA_TYPES = {"polygon": "labelme_polygon", "rectangle": "labelme_rectangle",
              "circle": "labelme_circle"}
LINE_TYPES = ("line", "linestrip", "point", "points")
POINT_COUNTS = {"rectangle": 2, "circle": 2, "mask": 2}


def read(source, document) -> Annotations:
    found = Annotations()
    if source.path.is_dir():
        files = sorted(source.path.glob("*.json"))
        if not files:
            found.problems.append(f"{source.path}: no LabelMe .json files in this folder")
        foreign = []
        for path in files:
            try:
                data = read_json(path)
            except DataError as exc:
                found.problems.append(str(exc))
                continue
            if isinstance(data, dict) and "shapes" in data:
                _read_file(path, data, source.data_path, found)
            else:
                foreign.append(path.name)
        if foreign:
            found.warnings.append(f"{len(foreign)} JSON file(s) in {source.path} are not LabelMe "
                                  f"files (no 'shapes'), skipped: {', '.join(foreign[:5])}")
    else:
        _read_file(source.path, document, source.data_path, found)
    return found


def _read_file(path: Path, data, data_path: Path, found: Annotations) -> None:
    name = path.name
    if not isinstance(data, dict) or not isinstance(data.get("shapes"), list):
        found.problems.append(f"{name}: not a LabelMe file (expected an object with a 'shapes' "
                              "list)")
        return
    base = relative_folder(path.parent, data_path)
    image_path = data.get("imagePath")
    if base is None:
        found.problems.append(f"{name}: the JSON file is outside the data folder {data_path}; "
                              "pass its folder as --data-path")
        return
    if not isinstance(image_path, str) or not image_path.strip():
        found.problems.append(f"{name}: no 'imagePath' string")
        return
    filename, problem = inside_name(base, image_path)
    if problem:
        found.problems.append(f"{name}: {problem}")
        return
    image = AnnotatedImage(filename, [], source=name, size=_size(data))
    try:
        image.image_data = _image_data(data.get("imageData"))
    except Bad as exc:
        found.problems.append(f"{name}: {exc}")
    for index, shape in enumerate(data["shapes"]):
        try:
            image.regions.append(_region(shape, index))
        except Bad as exc:
            found.problems.append(f"{name}: shape {index}: {exc}")
    found.images.append(image)


def _size(data: dict) -> tuple[int, int] | None:
    height, width = data.get("imageHeight"), data.get("imageWidth")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (height, width)):
        return height, width
    return None


def _image_data(value) -> bytes | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise Bad(f"'imageData' must be a base64 string or null, got {describe(value)}")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise Bad("'imageData' is not valid base64") from None


def _region(shape, index: int) -> Region:
    if not isinstance(shape, dict):
        raise Bad(f"must be an object with 'label' and 'points', got {describe(shape)}")
    label = shape.get("label")
    kind = shape.get("shape_type") or "polygon"
    if not isinstance(kind, str):
        raise Bad(f"'shape_type' must be a string, got {describe(kind)}")
    points = _points(shape.get("points"))
    need = POINT_COUNTS.get(kind)
    if need is not None and len(points) != need:
        raise Bad(f"a {kind} needs {need} points, got {len(points)}")
    if kind in AREA_TYPES:
        region = Region(AREA_TYPES[kind], {"points": points}, None, index)
    elif kind == "mask":
        region = Region("mask", _mask(shape.get("mask"), points), None, index)
    elif kind in LINE_TYPES:
        region = Region(kind, {"points": points}, None, index)
    else:
        raise Bad(f"unknown shape_type '{kind}' (LabelMe: polygon, rectangle, circle, mask, "
                  "line, linestrip, point)")
    if isinstance(label, str) and label.strip():
        region.class_name = label.strip()
    else:
        region.class_problem = f"'label' must be a class name, got {describe(label)}"
    return region


def _points(value) -> list[tuple[float, float]]:
    if not isinstance(value, list):
        raise Bad(f"'points' must be a list of [x, y] pairs, got {describe(value)}")
    points = []
    for index, point in enumerate(value):
        xy = numbers(point, f"points[{index}]")
        if len(xy) != 2:
            raise Bad(f"points[{index}] must be [x, y], got {describe(point)}")
        points.append((xy[0], xy[1]))
    return points


def _mask(value, points) -> dict:
    """A LabelMe ``mask`` shape: a base64 PNG over the box from its first point, as labelme
    places it (``mask[y1:y2 + 1, x1:x2 + 1]``, corners truncated to integers)."""
    if not isinstance(value, str):
        raise Bad(f"a mask shape needs a base64 PNG 'mask', got {describe(value)}")
    try:
        with Image.open(io.BytesIO(base64.b64decode(value, validate=True))) as picture:
            block = np.asarray(picture.convert("L")) > 0
    except (binascii.Error, ValueError, OSError) as exc:
        raise Bad(f"'mask' is not a base64 PNG ({exc})") from None
    (x1, y1), _ = points
    return {"row": int(y1), "col": int(x1), "mask": block}

