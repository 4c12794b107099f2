"""Region shapes -> class-index masks, each format by its own tool's pixel rule.

A tool's masks are what its users compare ours with, so each shape family keeps the pixel
convention of the software that defines the format:

- **VIA shapes** (``polygon``, ``rect``, ``circle``, ``ellipse``; also CVAT's ellipse):
  described below.
- **COCO polygons and RLE** (``coco_polygon``, ``rle``; also CVAT polygons and boxes, which
  CVAT's own mask export rasterises with the COCO API): exactly the COCO API's masks
  (`fcn_keras.annotations.rle`).
- **LabelMe shapes** (``labelme_polygon``, ``labelme_rectangle``, ``labelme_circle``): drawn with
  PIL's ImageDraw exactly as labelme's ``shape_to_mask`` (``labelme2voc``) draws them, outline
  included.
- **Bitmaps** (``mask``: a bool block at a row/column offset, from CVAT ``<mask>`` and LabelMe
  ``mask`` shapes; ``color_mask``: the pixels of one colour of an RGB mask file): as stored.

VIA pixel convention: pixel ``(row r, column c)`` is the point
``(x=c, y=r)`` of VIA's image coordinates, i.e. integer coordinates name pixel centres, as in
``skimage.draw``. A pixel belongs to a region when that point is inside the shape:

- **polygon**: inside or on the boundary: exactly the pixels of ``skimage.draw.polygon(ys, xs)``
  (computed here by an exact scanline version of skimage's crossing test, many times faster);
- **rect**: ``x <= c < x + width`` and ``y <= r < y + height``: an integer ``w x h`` rectangle
  covers exactly ``w * h`` pixels, the columns VIA's canvas rectangle spans;
- **circle / ellipse**: strictly inside, ``(u / rx)**2 + (v / ry)**2 < 1`` (skimage.draw.ellipse's
  test), where ``(u, v)`` are the offsets from the centre in the ellipse's own axes. ``theta`` is
  VIA's rotation: VIA draws ``ctx.ellipse(cx, cy, rx, ry, theta)`` on a y-down canvas, so the
  ``rx`` axis points along ``(cos theta, sin theta)`` (clockwise on screen); with skimage this is
  ``ellipse(cy, cx, ry, rx, rotation=-theta)``.

Parts of a shape outside the image are clipped away (the shape itself is not moved).
Overlaps: with ``draw_order="area"`` larger regions are painted first, so a small object lying on
a larger one stays visible; ``"file"`` paints in the file's order (later on top).
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import NamedTuple

import numpy as np
from PIL import Image, ImageDraw

from fcn_keras.annotations import rle
from fcn_keras.annotations.records import Region

DRAW_ORDERS = ("area", "file")
VIA_SHAPES = ("polygon", "rect", "circle", "ellipse")
LABELME_SHAPES = ("labelme_polygon", "labelme_rectangle", "labelme_circle")
AREA_SHAPES = VIA_SHAPES + ("coco_polygon", "rle", "mask", "color_mask") + LABELME_SHAPES
_VERTEX_EPS = 1e-12   # skimage's tolerance for "the pixel is a vertex"


class Footprint(NamedTuple):
    """The pixels of one shape: ``inside`` is a bool box whose top-left pixel is (row, col)."""

    row: int
    col: int
    inside: np.ndarray

    def paint(self, mask: np.ndarray, value: int) -> None:
        h, w = self.inside.shape
        mask[self.row:self.row + h, self.col:self.col + w][self.inside] = value

    @property
    def count(self) -> int:
        return int(np.count_nonzero(self.inside))


def polygon_footprint(xs, ys, height: int, width: int) -> Footprint | None:
    """Pixels inside or on a polygon; identical to ``skimage.draw.polygon(ys, xs, shape)``.

    skimage tests every pixel of the bounding box against every edge (O'Rourke's crossing test:
    a pixel is in when it is a vertex, or when the edges crossing its row to its right, or those
    crossing to its left, are odd in number). The same counts are obtained here per row from the
    crossing abscissae and prefix sums, so the cost grows with the box area, not area x edges.
    """
    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    if xs.size == 0:
        return None
    r0, r1 = max(0, math.floor(ys.min())), min(height - 1, math.ceil(ys.max()))
    c0, c1 = max(0, math.floor(xs.min())), min(width - 1, math.ceil(xs.max()))
    if r0 > r1 or c0 > c1:
        return None
    n_rows, n_cols = r1 - r0 + 1, c1 - c0 + 1
    previous = np.arange(-1, xs.size - 1)            # edge i runs from vertex i-1 to vertex i
    edges = (xs, ys, xs[previous], ys[previous])
    lo, hi = np.minimum(ys, edges[3]), np.maximum(ys, edges[3])
    stride, plane = n_cols + 1, n_rows * (n_cols + 1)
    # Right crossings, skimage's (yi > r) != (yj > r): rows lo <= r < hi, counted where c < x:
    # +1 at the row start and +1 at ceil(x), so the prefix sum is odd on [0, ceil(x)).
    rows, x = _crossings(edges, np.ceil(lo), np.ceil(hi) - 1, r0, r1)
    base = (rows - r0) * stride
    right = [base, base + _column(np.ceil(x) - c0, n_cols)]
    # Left crossings, skimage's (yi < r) != (yj < r): rows lo < r <= hi, counted where c > x.
    rows, x = _crossings(edges, np.floor(lo) + 1, np.floor(hi), r0, r1)
    left = [plane + (rows - r0) * stride + _column(np.floor(x) + 1 - c0, n_cols)]
    marks = np.bincount(np.concatenate(right + left), minlength=2 * plane)
    parity = np.cumsum(marks.reshape(2, n_rows, stride), axis=2)[:, :, :n_cols] & 1
    inside = (parity[0] | parity[1]).astype(bool)
    # Vertices (within skimage's 1e-12) are in, whatever the crossings say.
    vx, vy = np.rint(xs), np.rint(ys)
    on = (np.abs(xs - vx) < _VERTEX_EPS) & (np.abs(ys - vy) < _VERTEX_EPS) & \
        (vy >= r0) & (vy <= r1) & (vx >= c0) & (vx <= c1)
    if on.any():
        inside[vy[on].astype(np.int64) - r0, vx[on].astype(np.int64) - c0] = True
    return Footprint(r0, c0, inside)


def _crossings(edges, first, last, r0: int, r1: int):
    """(row, x) of every edge crossing a row in [first, last] (per edge), within rows r0..r1."""
    xs, ys, xj, yj = edges
    first = np.clip(first, r0, r1 + 1).astype(np.int64)
    last = np.clip(last, r0 - 1, r1).astype(np.int64)
    counts = np.maximum(last - first + 1, 0)
    edge = np.repeat(np.arange(xs.size), counts)
    rows = first[edge] + (np.arange(edge.size) - (np.cumsum(counts) - counts)[edge])
    with np.errstate(all="ignore"):   # a nearly flat edge may give +-inf: clipped below
        x = xs[edge] + ((rows - ys[edge]) * (xj[edge] - xs[edge])) / (yj[edge] - ys[edge])
    return rows, x


def _column(position: np.ndarray, n_cols: int) -> np.ndarray:
    return np.clip(position, 0, n_cols).astype(np.int64)


def rect_footprint(x: float, y: float, w: float, h: float, height: int, width: int
                   ) -> Footprint | None:
    """Pixels with ``x <= c < x + w`` and ``y <= r < y + h``."""
    r0, r1 = max(0, math.ceil(y)), min(height, math.ceil(y + h))
    c0, c1 = max(0, math.ceil(x)), min(width, math.ceil(x + w))
    if r0 >= r1 or c0 >= c1:
        return None
    return Footprint(r0, c0, np.ones((r1 - r0, c1 - c0), dtype=bool))


def ellipse_footprint(cx: float, cy: float, rx: float, ry: float, theta: float,
                      height: int, width: int) -> Footprint | None:
    """Pixels strictly inside an ellipse whose rx axis points along (cos theta, sin theta)."""
    if rx <= 0 or ry <= 0:
        return None
    cos_t, sin_t = math.cos(theta), math.sin(theta)
    if rx == ry or theta % math.pi == 0.0:   # circle or axis-aligned: keep integers exact
        cos_t, sin_t = 1.0, 0.0
    elif theta % (math.pi / 2) == 0.0:
        cos_t, sin_t, rx, ry = 1.0, 0.0, ry, rx
    half_x = math.hypot(rx * cos_t, ry * sin_t)
    half_y = math.hypot(rx * sin_t, ry * cos_t)
    r0, r1 = max(0, math.ceil(cy - half_y)), min(height - 1, math.floor(cy + half_y))
    c0, c1 = max(0, math.ceil(cx - half_x)), min(width - 1, math.floor(cx + half_x))
    if r0 > r1 or c0 > c1:
        return None
    dy = np.arange(r0, r1 + 1, dtype=np.float64)[:, None] - cy
    dx = np.arange(c0, c1 + 1, dtype=np.float64)[None, :] - cx
    if sin_t == 0.0:
        inside = (dx * ry) ** 2 + (dy * rx) ** 2 < (rx * ry) ** 2
    else:
        u = dx * cos_t + dy * sin_t
        v = dy * cos_t - dx * sin_t
        with np.errstate(over="ignore"):   # a tiny radius gives inf: outside, as it should
            inside = (u / rx) ** 2 + (v / ry) ** 2 < 1.0
    return Footprint(r0, c0, inside)


def footprint(region: Region, height: int, width: int) -> Footprint | None:
    """The pixels of an area region inside a ``height x width`` image (None when it has none)."""
    p = region.params
    if region.shape == "polygon":
        return polygon_footprint(p["all_points_x"], p["all_points_y"], height, width)
    if region.shape == "rect":
        return rect_footprint(p["x"], p["y"], p["width"], p["height"], height, width)
    if region.shape == "circle":
        return ellipse_footprint(p["cx"], p["cy"], p["r"], p["r"], 0.0, height, width)
    if region.shape == "ellipse":
        return ellipse_footprint(p["cx"], p["cy"], p["rx"], p["ry"], p.get("theta", 0.0),
                                 height, width)
    if region.shape == "coco_polygon":
        return coco_polygon_footprint(p["polygons"], height, width)
    if region.shape == "rle":
        if tuple(p["size"]) != (height, width):
            raise ValueError(f"RLE of size {p['size']} painted on a {height}x{width} image")
        return Footprint(0, 0, rle.decode_coco(p["counts"], p.get("text"), height, width))
    if region.shape == "mask":
        return block_footprint(p["row"], p["col"], p["mask"], height, width)
    if region.shape == "color_mask":
        return Footprint(0, 0, colour_pixels(p["path"], p["color"], height, width))
    if region.shape in LABELME_SHAPES:
        return Footprint(0, 0, labelme_pixels(region.shape, p["points"], height, width))
    raise ValueError(f"{region.shape} regions have no area")


def coco_polygon_footprint(polygons, height: int, width: int) -> Footprint | None:
    """The union of an object's COCO polygons, as the COCO API merges them."""
    parts = [part for part in (rle.coco_polygon_mask(xy, height, width) for xy in polygons)
             if part is not None]
    if not parts:
        return None
    first = min(col for col, _ in parts)
    last = max(col + block.shape[1] for col, block in parts)
    inside = np.zeros((height, last - first), dtype=bool)
    for col, block in parts:
        inside[:, col - first:col - first + block.shape[1]] |= block
    return Footprint(0, first, inside)


def block_footprint(row: int, col: int, block: np.ndarray, height: int, width: int
                    ) -> Footprint | None:
    """A bool block placed at (row, col), cut to the image."""
    r0, c0 = max(0, row), max(0, col)
    r1, c1 = min(height, row + block.shape[0]), min(width, col + block.shape[1])
    if r0 >= r1 or c0 >= c1:
        return None
    return Footprint(r0, c0, block[r0 - row:r1 - row, c0 - col:c1 - col])


@functools.lru_cache(maxsize=8)
def _rgb(path: Path, stamp: tuple) -> np.ndarray:
    """An RGB mask file's pixels as 24-bit keys (cached: every colour of a file is one region;
    `stamp` (size, mtime) keeps a changed file from being served stale)."""
    with Image.open(path) as image:
        rgb = np.asarray(image.convert("RGB"), dtype=np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def colour_pixels(path: Path, color, height: int, width: int) -> np.ndarray:
    stat = Path(path).stat()
    keys = _rgb(Path(path), (stat.st_size, stat.st_mtime_ns))
    if keys.shape != (height, width):
        raise ValueError(f"{path}: mask of size {keys.shape} painted on {height}x{width}")
    r, g, b = color
    return keys == ((r << 16) | (g << 8) | b)


def labelme_pixels(shape: str, points, height: int, width: int) -> np.ndarray:
    """labelme's ``shape_to_mask``: PIL draws the shape filled and outlined on the image."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    xy = [tuple(point) for point in points]
    if shape == "labelme_circle":
        (cx, cy), (px, py) = xy
        d = math.hypot(cx - px, cy - py)
        draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=1, fill=1)
    elif shape == "labelme_rectangle":
        (x0, y0), (x1, y1) = xy     # corners in any order (newer Pillow refuses x1 < x0)
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=1, fill=1)
    else:
        draw.polygon(xy=xy, outline=1, fill=1)
    return np.asarray(canvas, dtype=bool)


def region_area(region: Region) -> float:
    """Geometric area in square pixels (polygon by the shoelace formula)."""
    p = region.params
    if region.shape == "polygon":
        x = np.asarray(p["all_points_x"], dtype=np.float64)
        y = np.asarray(p["all_points_y"], dtype=np.float64)
        if x.size < 3:
            return 0.0
        # Shoelace about the first vertex: smaller products, exact for integer coordinates.
        x, y = x[1:] - x[0], y[1:] - y[0]
        return float(abs(np.dot(x[:-1], y[1:]) - np.dot(y[:-1], x[1:])) / 2.0)
    if region.shape == "rect":
        return p["width"] * p["height"]
    if region.shape == "circle":
        return math.pi * p["r"] ** 2
    if region.shape == "ellipse":
        return math.pi * p["rx"] * p["ry"]
    if region.shape == "coco_polygon":
        return sum(rle.polygon_area(xy) for xy in p["polygons"])
    if region.shape == "rle":
        return float(sum(p["counts"][1::2]))
    if region.shape == "mask":
        return float(np.count_nonzero(p["mask"]))
    if region.shape == "color_mask":
        return float(p["area"])
    if region.shape == "labelme_polygon":
        return rle.polygon_area([v for point in p["points"] for v in point])
    if region.shape == "labelme_rectangle":
        (x0, y0), (x1, y1) = p["points"]
        return abs(x1 - x0) * abs(y1 - y0)
    if region.shape == "labelme_circle":
        (cx, cy), (px, py) = p["points"]
        return math.pi * ((cx - px) ** 2 + (cy - py) ** 2)
    return 0.0


def degenerate_reason(region: Region, area: float | None = None) -> str | None:
    """Why an area region encloses nothing (then it is skipped with a warning), or None."""
    p = region.params
    if region.shape == "polygon":
        n = len(p["all_points_x"])
        if n < 3:
            return f"polygon with {n} point(s)"
        if (region_area(region) if area is None else area) == 0.0:
            return "polygon with zero area"
        return None
    if region.shape == "rect" and (p["width"] == 0 or p["height"] == 0):
        return "rectangle with zero width or height"
    if region.shape == "circle" and p["r"] == 0:
        return "circle with zero radius"
    if region.shape == "ellipse" and (p["rx"] == 0 or p["ry"] == 0):
        return "ellipse with a zero radius"
    if region.shape == "coco_polygon" and (area if area is not None else region_area(region)) == 0:
        return "polygon with zero area"
    if region.shape in ("rle", "mask", "color_mask") and \
            (area if area is not None else region_area(region)) == 0:
        return "empty mask"
    if region.shape == "labelme_polygon" and len(p["points"]) < 3:
        return f"polygon with {len(p['points'])} point(s)"
    return None


def paint_order(regions: list[Region], draw_order: str = "area",
                areas: list[float] | None = None) -> list[int]:
    """Positions of `regions` in painting order: by decreasing area (ties: file order) or file."""
    if draw_order not in DRAW_ORDERS:
        raise ValueError(f"draw_order must be one of {DRAW_ORDERS}, got {draw_order!r}")
    order = list(range(len(regions)))
    if draw_order == "area":
        areas = [region_area(r) for r in regions] if areas is None else areas
        order.sort(key=lambda i: -areas[i])   # stable: equal areas keep the file's order
    return order


def rasterize(regions: list[Region], class_indices: list[int], height: int, width: int,
              draw_order: str = "area", outside: list[int] | None = None) -> np.ndarray:
    """A ``(height, width)`` uint8 mask: 0 (background) where no region is, else its class.

    Regions without area (polylines, points, degenerate shapes) are left out. When `outside` is
    a list, the positions of regions that cover no pixel of the image are appended to it.
    """
    mask = np.zeros((height, width), dtype=np.uint8)
    areas = [region_area(r) for r in regions]
    for i in paint_order(regions, draw_order, areas):
        if regions[i].shape not in AREA_SHAPES or degenerate_reason(regions[i], areas[i]):
            continue
        fp = footprint(regions[i], height, width)
        if fp is not None and fp.inside.any():
            fp.paint(mask, class_indices[i])
        elif outside is not None:
            outside.append(i)
    return mask
