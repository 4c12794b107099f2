"""CVAT for images 1.1 XML (``annotations.xml``) -> records.

``<annotations><meta>...<labels><label><name>car</name><color>#fa3253</color>...</labels>
...</meta><image name="a.jpg" width="640" height="480" subset="Train"><polygon label="car"
points="x,y;x,y;..." z_order="0"/><box xtl ytl xbr ybr rotation/><mask rle="3, 5, ..." left top
width height/><ellipse cx cy rx ry rotation/>...</image></annotations>``.

Polygons and boxes (a ``rotation`` in degrees turns a box clockwise on screen about its centre)
are rasterised with the COCO API's rule, as CVAT's own "Segmentation mask" export does (it goes
through datumaro and pycocotools). ``<mask>``: CVAT's RLE, runs over its ``width x height`` box
in row-major order starting with 0s, placed at ``left, top``. ``<ellipse>``: pixels whose
centres (x + 0.5, y + 0.5 in CVAT's coordinates) are strictly inside. Polylines, points, cuboids
and skeletons are skipped with a count; attributes and ``<tag>``s are ignored. Within an image,
shapes keep CVAT's ``z_order`` (lower first) as their file order.

Classes: the labels of ``<meta>`` in project order, with their colours; ``--classes`` wins.
``subset`` (project exports) names the split list (Train -> train, Validation -> val).
``<track>`` elements (CVAT for video) are refused: export the task as "CVAT for images 1.1".
"""

from __future__ import annotations

import math
import xml.etree.ElementTree as ET

import numpy as np

from fcn_keras.annotations import rle
from fcn_keras.annotations.records import (
    AnnotatedImage,
    Annotations,
    Bad,
    Region,
    filename_problem,
    number,
    split_name,
)

SKIPPED = ("polyline", "points", "cuboid", "skeleton")


def read(source, document=None) -> Annotations:
    found = Annotations()
    name = source.path.name
    try:
        root = ET.parse(source.path).getroot()   # expat >= 2.4 refuses entity-expansion bombs
    except ET.ParseError as exc:
        found.problems.append(f"{name}: not valid XML ({exc})")
        return found
    except OSError as exc:
        found.problems.append(f"{name}: cannot read the file ({exc})")
        return found
    if root.tag != "annotations":
        found.problems.append(f"{name}: not a CVAT for images file (the root element is "
                              f"<{root.tag}>, expected <annotations>)")
        return found
    if root.find("track") is not None:
        found.problems.append(f"{name}: <track> elements (CVAT for video 1.1) are not read; "
                              "export the task as 'CVAT for images 1.1'")
    found.declared = _labels(root.find("meta"))
    for position, element in enumerate(root.findall("image")):
        image = _image(element, position, name, found.problems)
        if image is not None:
            found.images.append(image)
    return found


def _labels(meta) -> list[tuple[str, tuple | None]]:
    """(name, colour) of the project's labels, in order (skeleton sub-labels left out)."""
    if meta is None:
        return []
    declared = []
    for labels in meta.iter("labels"):
        for label in labels.findall("label"):
            name = (label.findtext("name") or "").strip()
            if name and name not in [n for n, _ in declared]:
                declared.append((name, _colour(label.findtext("color"))))
    return declared


def _colour(text: str | None) -> tuple[int, int, int] | None:
    text = (text or "").strip().lstrip("#")
    if len(text) != 6:
        return None
    try:
        return tuple(int(text[i:i + 2], 16) for i in (0, 2, 4))
    except ValueError:
        return None


def _image(element, position: int, name: str, problems: list[str]) -> AnnotatedImage | None:
    filename = element.get("name")
    if not filename:
        problems.append(f"{name}: <image> {position} has no 'name'")
        return None
    bad_name = filename_problem(filename)
    if bad_name:
        problems.append(f"{name}: {filename}: {bad_name}")
        return None
    size = None
    try:
        size = (int(element.get("height")), int(element.get("width")))
    except (TypeError, ValueError):
        pass
    subset = element.get("subset")
    image = AnnotatedImage(filename, [], source=name, size=size,
                           split=split_name(subset) if subset else None)
    shapes = [child for child in element if child.tag != "tag"]
    shapes.sort(key=lambda child: _z_order(child.get("z_order")))
    for index, child in enumerate(shapes):
        try:
            image.regions.append(_region(child, index))
        except (Bad, rle.RLEError) as exc:
            problems.append(f"{name}: {filename}: <{child.tag}> {index}: {exc}")
    return image


def _z_order(text) -> int:
    try:
        return int(text)
    except (TypeError, ValueError):
        return 0


def _region(child, index: int) -> Region:
    label = (child.get("label") or "").strip()
    tag = child.tag
    if tag == "polygon":
        region = Region("coco_polygon", {"polygons": [_points(child.get("points"))]}, None, index)
    elif tag == "box":
        region = Region("coco_polygon", {"polygons": [_box(child)]}, None, index)
    elif tag == "mask":
        region = Region("mask", _mask(child), None, index)
    elif tag == "ellipse":
        region = Region("ellipse", _ellipse(child), None, index)
    elif tag in SKIPPED:
        region = Region(tag, {}, None, index)
    else:
        raise Bad(f"unknown shape <{tag}> (CVAT shapes: polygon, box, mask, ellipse, polyline, "
                  "points, cuboid, skeleton)")
    if label:
        region.class_name = label
    else:
        region.class_problem = "no 'label'"
    return region


def _attribute(child, key: str) -> float:
    value = child.get(key)
    if value is None:
        raise Bad(f"has no '{key}'")
    return number(value, key)


def _points(text) -> list[float]:
    if not text:
        raise Bad("has no 'points'")
    xy = []
    for pair in text.split(";"):
        parts = pair.split(",")
        if len(parts) != 2:
            raise Bad(f"'points' must be 'x,y;x,y;...', got {text[:40]!r}")
        xy += [number(parts[0], "x"), number(parts[1], "y")]
    return xy


def _box(child) -> list[float]:
    """The box's corners as a polygon, turned by ``rotation`` degrees about its centre."""
    x0, y0 = _attribute(child, "xtl"), _attribute(child, "ytl")
    x1, y1 = _attribute(child, "xbr"), _attribute(child, "ybr")
    corners = np.array([(x0, y0), (x1, y0), (x1, y1), (x0, y1)])
    angle = math.radians(number(child.get("rotation") or 0, "rotation"))
    if angle:
        centre = corners.mean(axis=0)
        turn = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
        corners = (corners - centre) @ turn.T + centre
    return corners.ravel().tolist()


def _mask(child) -> dict:
    left, top = int(_attribute(child, "left")), int(_attribute(child, "top"))
    width, height = int(_attribute(child, "width")), int(_attribute(child, "height"))
    if width < 1 or height < 1:
        raise Bad(f"mask box is {width}x{height}")
    counts = rle.cvat_counts(child.get("rle") or "")
    rle.check_counts(counts, height, width)
    return {"row": top, "col": left,
            "mask": rle.counts_to_mask(counts, height, width, column_major=False)}


def _ellipse(child) -> dict:
    """CVAT's continuous coordinates -> VIA's pixel-centre ones (half a pixel up and left)."""
    rotation = number(child.get("rotation") or 0, "rotation")
    return {"cx": _attribute(child, "cx") - 0.5, "cy": _attribute(child, "cy") - 0.5,
            "rx": _attribute(child, "rx"), "ry": _attribute(child, "ry"),
            "theta": math.radians(rotation)}
