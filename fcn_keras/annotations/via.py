"""Reading VGG Image Annotator (VIA) JSON files of every flavour into one simple structure.

VIA has changed its file layout three times; all of them are read here:

- **1.x export**: ``{"img.jpg12345": {"fileref", "size", "filename", "base64_img_data",
  "file_attributes", "regions": {"0": {...}, "1": {...}}}}`` (regions are a dict).
- **2.x export**: ``{"img.jpg12345": {"filename", "size", "file_attributes", "regions": [...]}}``.
- **2.x project**: ``{"_via_settings", "_via_img_metadata": {<2.x export>}, "_via_attributes"}``.
- **3.x project**: ``{"project", "config", "attribute", "file", "view", "metadata"}``; a metadata
  entry ``{"vid", "z": [], "xy": [shape_id, coords...], "av": {attribute_id: value}}`` with an
  empty ``z`` and a non-empty ``xy`` is a spatial region of the file ``view[vid].fid_list[0]``.

Every region becomes a `Region` with a 2.x shape name (``polygon``, ``rect``, ``circle``,
``ellipse``, ``polyline``, ``point``) and float parameters in VIA's pixel coordinates: the
3.x line is read as a two-point polyline, the extreme rectangle as the bounding box of its
points, the extreme circle as the circle through its three points.

The class of a region is read from its region attributes: the key given as ``attribute``, or
else the first of ``Name``, ``name``, ``class``, ``label``, ``type``, ``category`` that is present
(compared case-insensitively). The value may be a string, a number or a dict of checkbox options
(``{"cat": true}``: exactly one option must be ticked). A region without such a value gets
``class_name=None``; the converter reports it.

A large 1.x / 2.x file is also read one entry at a time (`stream_via`, for the converter),
giving what `parse_via` gives for the whole document.

Problems (malformed JSON, missing keys, wrong types, non-finite coordinates, file names that leave
the data folder) are all collected and raised together as one `DataError` that names the JSON
file, the image, the region index and what is wrong.
"""

from __future__ import annotations

import math
from pathlib import Path

from fcn_keras.annotations.records import (
    MAX_COORDINATE,
    AnnotatedImage,
    Annotations,
    Bad,
    Region,
    describe,
    filename_problem,
    format_problems,
    get_key,
    number,
    numbers,
    numeric_order,
    read_json,
)
from fcn_keras.annotations.stream import JSONStream, StreamError
from fcn_keras.errors import DataError

CLASS_KEYS = ("Name", "name", "class", "label", "type", "category")

# VIA 3.x constants (via-3.x.y/src/js/_via_metadata.js and _via_attribute.js).
VIA3_SHAPES = {1: "POINT", 2: "RECTANGLE", 3: "CIRCLE", 4: "ELLIPSE", 5: "LINE", 6: "POLYLINE",
               7: "POLYGON", 8: "EXTREME_RECTANGLE", 9: "EXTREME_CIRCLE"}
VIA3_CHECKBOX = 2

# ---------------------------------------------------------------------------------------------
# Shapes

def parse_shape(attrs) -> tuple[str, dict]:
    """2.x / 1.x ``shape_attributes`` -> (shape name, float parameters)."""
    if not isinstance(attrs, dict):
        raise Bad(f"'shape_attributes' must be an object, got {describe(attrs)}")
    name = attrs.get("name")
    if not isinstance(name, str):
        raise Bad("'shape_attributes' has no shape 'name'" if name is None
                   else f"shape 'name' must be a string, got {describe(name)}")
    shape = name.strip().lower()
    if shape in ("polygon", "polyline"):
        xs = numbers(get_key(attrs, "all_points_x", shape), "all_points_x")
        ys = numbers(get_key(attrs, "all_points_y", shape), "all_points_y")
        if len(xs) != len(ys):
            raise Bad(f"{shape} has {len(xs)} x but {len(ys)} y coordinates")
        return shape, {"all_points_x": xs, "all_points_y": ys}
    keys = {"rect": ("x", "y", "width", "height"), "circle": ("cx", "cy", "r"),
            "ellipse": ("cx", "cy", "rx", "ry"), "point": ("cx", "cy")}.get(shape)
    if keys is None:
        raise Bad(f"unsupported shape '{name}' (VIA shapes: polygon, rect, circle, ellipse, "
                   "polyline, point)")
    params = {k: number(get_key(attrs, k, shape), k) for k in keys}
    if shape == "ellipse":
        theta = attrs.get("theta", 0.0)
        params["theta"] = 0.0 if theta is None else number(theta, "theta", limit=None)
    return _normalised(shape, params)


def _normalised(shape: str, params: dict) -> tuple[str, dict]:
    """Negative radii are errors; a rectangle dragged 'backwards' is flipped into place."""
    for key in ("r", "rx", "ry"):
        if params.get(key, 0.0) < 0:
            raise Bad(f"{shape} has a negative radius {key}={params[key]:g}")
    if shape == "rect":
        if params["width"] < 0:
            params["x"], params["width"] = params["x"] + params["width"], -params["width"]
        if params["height"] < 0:
            params["y"], params["height"] = params["y"] + params["height"], -params["height"]
    return shape, params


def parse_via3_shape(xy) -> tuple[str, dict]:
    """3.x ``xy = [shape_id, coords...]`` -> (2.x shape name, float parameters)."""
    if not isinstance(xy, list) or not xy:
        raise Bad(f"'xy' must be a non-empty list, got {describe(xy)}")
    shape_id = xy[0]
    if isinstance(shape_id, bool) or not isinstance(shape_id, (int, float)) or \
            shape_id not in VIA3_SHAPES:
        raise Bad(f"unknown VIA 3 shape id {describe(shape_id)} (expected 1..9)")
    kind = VIA3_SHAPES[int(shape_id)]
    coords = numbers(xy[1:], "xy")
    n = len(coords)

    def need(counts):
        if n not in counts:
            raise Bad(f"{kind} needs {' or '.join(map(str, counts))} coordinates, got {n}")

    if kind == "POINT":
        need((2,))
        return "point", {"cx": coords[0], "cy": coords[1]}
    if kind == "RECTANGLE":
        need((4,))
        return _normalised("rect", dict(zip(("x", "y", "width", "height"), coords)))
    if kind == "CIRCLE":
        need((3,))
        return _normalised("circle", dict(zip(("cx", "cy", "r"), coords)))
    if kind == "ELLIPSE":
        need((4, 5))
        params = dict(zip(("cx", "cy", "rx", "ry"), coords))
        params["theta"] = coords[4] if n == 5 else 0.0
        return _normalised("ellipse", params)
    if n % 2:
        raise Bad(f"{kind} needs (x, y) pairs, got {n} coordinates")
    xs, ys = coords[0::2], coords[1::2]
    if kind in ("LINE", "POLYLINE"):
        return "polyline", {"all_points_x": xs, "all_points_y": ys}
    if kind == "POLYGON":
        return "polygon", {"all_points_x": xs, "all_points_y": ys}
    if kind == "EXTREME_RECTANGLE":
        if not xs:
            raise Bad("EXTREME_RECTANGLE has no points")
        x0, y0 = min(xs), min(ys)
        return "rect", {"x": x0, "y": y0, "width": max(xs) - x0, "height": max(ys) - y0}
    need((6,))
    return "circle", circle_through(xs, ys)


def circle_through(xs: list[float], ys: list[float]) -> dict:
    """The circle through three points; radius 0 (a degenerate region) when they are collinear."""
    (ax, bx, cx), (ay, by, cy) = xs, ys
    d = 2.0 * (ax * (by - cy) + bx * (cy - ay) + cx * (ay - by))
    if d == 0.0:
        return {"cx": ax, "cy": ay, "r": 0.0}
    a2, b2, c2 = ax * ax + ay * ay, bx * bx + by * by, cx * cx + cy * cy
    ux = (a2 * (by - cy) + b2 * (cy - ay) + c2 * (ay - by)) / d
    uy = (a2 * (cx - bx) + b2 * (ax - cx) + c2 * (bx - ax)) / d
    r = math.hypot(ax - ux, ay - uy)
    if not all(math.isfinite(v) and abs(v) <= MAX_COORDINATE for v in (ux, uy, r)):
        return {"cx": ax, "cy": ay, "r": 0.0}   # nearly collinear: no usable circle
    return {"cx": ux, "cy": uy, "r": r}


# ---------------------------------------------------------------------------------------------
# Classes

def class_name_of(attributes: dict, attribute: str | None = None) -> tuple[str | None, str | None]:
    """(class name, problem) of a region from its attributes; (None, None) if absent."""
    key = find_class_key(attributes, attribute)
    if key is None:
        return None, None
    try:
        return class_value(attributes[key], key), None
    except Bad as exc:
        return None, str(exc)


def find_class_key(attributes: dict, attribute: str | None = None) -> str | None:
    candidates = (attribute,) if attribute else CLASS_KEYS
    for candidate in candidates:
        if candidate in attributes:
            return candidate
    folded = {str(k).casefold(): k for k in attributes}
    for candidate in candidates:
        if candidate.casefold() in folded:
            return folded[candidate.casefold()]
    return None


def class_value(value, key: str) -> str | None:
    """A class name from a string, a number or a dict of ticked checkbox options."""
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, bool) or value is None:
        raise Bad(f"attribute '{key}' must be a class name, got {describe(value)}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise Bad(f"attribute '{key}' must be a class name, got {value!r}")
        return str(int(value)) if value.is_integer() else repr(value)
    if isinstance(value, dict):
        ticked = [str(k).strip() for k, v in value.items() if v is True or v == "true"]
        if len(ticked) > 1:
            raise Bad(f"attribute '{key}' has several options ticked ({', '.join(ticked)}); "
                       "a region needs exactly one class")
        return (ticked[0] or None) if ticked else None
    raise Bad(f"attribute '{key}' must be a class name, got {describe(value)}")


def load_via(json_path: str | Path, attribute: str | None = None) -> list[AnnotatedImage]:
    """Every image entry of a VIA 1.x/2.x/3.x JSON file; one DataError listing all problems."""
    images, problems = parse_via(read_json(json_path), Path(json_path).name, attribute)
    if problems:
        raise DataError(format_problems(problems, f"{json_path}"))
    return images


def parse_via(data, source: str = "<json>", attribute: str | None = None, consume: bool = False
              ) -> tuple[list[AnnotatedImage], list[str]]:
    """Parse an already-loaded VIA document: (images, problems), never raising on bad input.
    `consume`: take the 1.x/2.x image entries out of `data` as they are read, so that the
    parsed document and its records are not both held in full (a file of 100,000 entries)."""
    if not isinstance(data, dict):
        return [], [f"{source}: not a VIA file (expected a JSON object at the top, "
                    f"got {type(data).__name__})"]
    if "_via_img_metadata" in data:
        metadata = data["_via_img_metadata"]
        if not isinstance(metadata, dict):
            return [], [f"{source}: '_via_img_metadata' must be an object"]
        return _parse_via2(metadata, source, attribute, consume)
    if "metadata" in data and "file" in data and ("view" in data or "project" in data):
        return _parse_via3(data, source, attribute)
    return _parse_via2(data, source, attribute, consume)


def _parse_via2(entries: dict, source: str, attribute: str | None, consume: bool = False):
    """1.x and 2.x entries (regions as a dict or a list)."""
    images, problems = [], []
    for key in list(entries):
        image = _via2_entry(key, entries.pop(key) if consume else entries[key], source,
                            attribute, problems)
        if image is not None:
            images.append(image)
    return images, problems


def _via2_entry(key, entry, source: str, attribute: str | None, problems: list[str]
                ) -> AnnotatedImage | None:
    """One 1.x / 2.x image entry; its problems go to `problems` (None: no usable entry)."""
    if not isinstance(entry, dict):
        problems.append(f"{source}: entry '{key}' is not an image entry (expected an object "
                        f"with 'filename' and 'regions', got {describe(entry)})")
        return None
    filename = entry.get("filename")
    if not isinstance(filename, str):
        problems.append(f"{source}: entry '{key}' has no 'filename' string")
        return None
    where = f"{source}: {filename}"
    bad_name = filename_problem(filename)
    if bad_name:
        problems.append(f"{where}: {bad_name}")
        return None
    raw_regions = entry.get("regions", [])
    if isinstance(raw_regions, dict):   # VIA 1.x: {"0": {...}, "1": {...}}
        keys = list(raw_regions)
        if all(isinstance(k, str) and k.isascii() and k.isdigit() for k in keys):
            keys.sort(key=numeric_order)
        raw_regions = [raw_regions[k] for k in keys]
    elif raw_regions is None:
        raw_regions = []
    if not isinstance(raw_regions, list):
        problems.append(f"{where}: 'regions' must be a list (or a dict in VIA 1.x), "
                        f"got {describe(raw_regions)}")
        return None
    regions = []
    for index, raw in enumerate(raw_regions):
        try:
            regions.append(_parse_via2_region(raw, index, attribute))
        except Bad as exc:
            problems.append(f"{where}: region {index}: {exc}")
    file_attributes = entry.get("file_attributes")
    return AnnotatedImage(filename, regions,
                          file_attributes if isinstance(file_attributes, dict) else {}, source)


def _parse_via2_region(raw, index: int, attribute: str | None) -> Region:
    if not isinstance(raw, dict):
        raise Bad(f"must be an object with 'shape_attributes', got {describe(raw)}")
    if "shape_attributes" not in raw:
        raise Bad("has no 'shape_attributes'")
    shape, params = parse_shape(raw["shape_attributes"])
    attributes = raw.get("region_attributes", {})
    if attributes is None:
        attributes = {}
    if not isinstance(attributes, dict):
        raise Bad(f"'region_attributes' must be an object, got {describe(attributes)}")
    name, problem = class_name_of(attributes, attribute)
    return Region(shape, params, name, index, attributes, problem)


def _parse_via3(data: dict, source: str, attribute: str | None):
    problems = []
    files, views, metadata = data.get("file"), data.get("view"), data.get("metadata")
    attribute_defs = data.get("attribute") or {}
    for key, value in (("file", files), ("view", views), ("metadata", metadata),
                       ("attribute", attribute_defs)):
        if not isinstance(value, dict):
            problems.append(f"{source}: VIA 3 '{key}' must be an object, got {describe(value)}")
    if problems:
        return [], problems

    images: dict[str, AnnotatedImage] = {}
    for fid, entry in files.items():
        fname = entry.get("fname") if isinstance(entry, dict) else None
        if not isinstance(fname, str):
            problems.append(f"{source}: file '{fid}' has no 'fname' string")
            continue
        bad_name = filename_problem(fname)
        if bad_name:
            problems.append(f"{source}: {fname}: {bad_name}")
            continue
        images[str(fid)] = AnnotatedImage(fname, [], {}, source)

    view_file = {}
    for vid, view in views.items():
        fid_list = view.get("fid_list") if isinstance(view, dict) else None
        if not isinstance(fid_list, list) or not fid_list:
            problems.append(f"{source}: view '{vid}' has no 'fid_list'")
            continue
        view_file[str(vid)] = str(fid_list[0])

    for mid, meta in metadata.items():
        try:
            _add_via3_region(meta, mid, images, view_file, attribute_defs, attribute)
        except Bad as exc:
            problems.append(f"{source}: {exc}")
    return list(images.values()), problems


def _add_via3_region(meta, mid, images, view_file, attribute_defs, attribute):
    if not isinstance(meta, dict):
        raise Bad(f"metadata '{mid}' must be an object, got {describe(meta)}")
    vid = str(meta.get("vid"))
    if vid not in view_file or view_file[vid] not in images:
        raise Bad(f"metadata '{mid}' refers to an unknown view/file (vid {meta.get('vid')!r})")
    image = images[view_file[vid]]
    z, xy, av = meta.get("z", []), meta.get("xy", []), meta.get("av", {})
    if not isinstance(av, dict):
        raise Bad(f"{image.filename}: metadata '{mid}': 'av' must be an object")
    named = _via3_named_values(av, attribute_defs)
    if not isinstance(z, list) or not isinstance(xy, list):
        raise Bad(f"{image.filename}: metadata '{mid}': 'z' and 'xy' must be lists")
    if z or not xy:   # temporal segment or file-level metadata: not a spatial region
        if not xy and not z:
            image.file_attributes.update(named)
        return
    index = len(image.regions)
    try:
        shape, params = parse_via3_shape(xy)
    except Bad as exc:
        raise Bad(f"{image.filename}: region {index} (metadata '{mid}'): {exc}") from None
    name, problem = class_name_of(named, attribute)
    image.regions.append(Region(shape, params, name, index, named, problem))


def _via3_named_values(av: dict, attribute_defs: dict) -> dict:
    """3.x ``{attribute_id: option_id_or_text}`` -> ``{attribute name: option label or text}``."""
    named = {}
    for aid, value in av.items():
        spec = attribute_defs.get(aid) if isinstance(attribute_defs.get(aid), dict) else {}
        name = spec.get("aname") if isinstance(spec.get("aname"), str) else str(aid)
        options = spec.get("options") if isinstance(spec.get("options"), dict) else {}
        if spec.get("type") == VIA3_CHECKBOX and isinstance(value, str) and options:
            value = {str(options.get(o.strip(), o.strip())): True for o in value.split(",")
                     if o.strip()}
        elif isinstance(value, (str, int)) and not isinstance(value, bool) and \
                str(value) in options:
            value = options[str(value)]
        named[name] = value
    return named


# ---------------------------------------------------------------------------------------------
# Large files, one entry at a time

# VIA files at least this large are streamed by the converter (about 4,500 one-polygon entries;
# loaded whole, such a file takes about 10 MB of Python objects)
STREAM_BYTES = 2 ** 20


def streamable(path: Path) -> bool:
    """Whether the converter reads `path` with `stream_via` instead of loading it whole: a
    VIA 1.x / 2.x file (a 2.x project, whose first key is ``_via_...``, or an export, whose
    first value is an image entry) of at least `STREAM_BYTES`. Anything else, or anything
    odd, is loaded whole, where every problem gets its usual message."""
    try:
        if path.stat().st_size < STREAM_BYTES:
            return False
        with open(path, "rb") as handle:
            stream = JSONStream(handle, chunk_chars=1 << 16)
            if stream.peek() != "{":
                return False
            for key in stream.members():
                if key.startswith("_via_"):
                    return True
                first = stream.value()
                return isinstance(first, dict) and isinstance(first.get("filename"), str)
    except (OSError, StreamError):
        return False
    return False


def stream_via(path: Path, source: str, attribute: str | None = None):
    """The images of a VIA 1.x / 2.x file (see `streamable`) as `AnnotatedImage`s, and its
    problems as strings, in the file's order, one entry in memory at a time: what
    `parse_via(read_json(path))` returns, except that an entry key given twice is read twice
    (a dict keeps the last). A file that is not valid JSON raises `read_json`'s DataError."""
    try:
        yield from _streamed_entries(path, source, attribute)
    except StreamError as exc:
        read_json(path)   # the usual message for a broken file
        raise DataError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read the annotation file ({exc})") from None


def _streamed_entries(path: Path, source: str, attribute: str | None):
    problems: list[str] = []
    with open(path, "rb") as handle:
        stream = JSONStream(handle)
        project, metadata, rest = None, False, {}
        for key in stream.members():
            if project is None:
                project = key.startswith("_via_")
            if not project:                                    # an export: entries at the top
                entries = [(key, stream.value())]
            elif key == "_via_img_metadata" and not metadata and stream.peek() == "{":
                metadata = True
                entries = ((entry_key, stream.value()) for entry_key in stream.members())
            elif key == "_via_image_id_list" and stream.peek() == "[":
                for _ in stream.items():                      # one name per image: not kept
                    stream.value()
                continue
            else:
                rest[key] = stream.value()
                continue
            for entry_key, entry in entries:
                image = _via2_entry(entry_key, entry, source, attribute, problems)
                yield from problems
                problems.clear()
                if image is not None:
                    yield image
        stream.end()
    if project and not metadata:   # no image entries where a project keeps them
        images, problems = parse_via(rest, source, attribute)
        yield from problems
        yield from images


def read(source, document) -> Annotations:
    """The reader interface (see `fcn_keras.annotations`): a loaded VIA document."""
    images, problems = parse_via(document, source.path.name, source.attribute, consume=True)
    return Annotations(images, problems)
