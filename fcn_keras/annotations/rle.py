"""Run-length encoded masks and COCO polygons, bit-exact with the COCO API (pycocotools).

COCO stores a mask as runs over the pixels in column-major order (down each column, then the
next column), starting with a run of 0s: ``counts`` is a list of integers ("uncompressed") or a
string of 6-bit characters ("compressed": LEB128-like, each count after the second stored as the
difference to the count two places before). COCO polygons are rasterised by the COCO API's own
rule (`coco_polygon_mask`), so masks made here agree pixel for pixel with what detectron2,
mmdetection or CVAT's exports (datumaro) make from the same file.

pycocotools is the reference decoder: when it is installed it decodes the RLE; the pure-numpy
code here is the fallback (tests check that both agree). Counts are always validated here first
(their sum must be height * width): pycocotools itself does not check and would write past its
buffer.

CVAT's ``<mask>`` uses another RLE: comma-separated runs over its box in row-major order,
starting with a run of 0s.
"""

from __future__ import annotations

import numpy as np

try:   # optional: the COCO API's C decoder
    from pycocotools import mask as _coco_mask
except ImportError:   # pragma: no cover - depends on the environment
    _coco_mask = None


class RLEError(ValueError):
    """A run-length encoding that cannot be decoded (the message says why)."""


def string_to_counts(text: str) -> list[int]:
    """COCO's compressed ``counts`` string -> the list of run lengths."""
    counts: list[int] = []
    position = 0
    while position < len(text):
        value, shift, more = 0, 0, True
        while more:
            if position >= len(text):
                raise RLEError("the compressed counts string ends in the middle of a number")
            code = ord(text[position]) - 48
            if not 0 <= code < 64:
                raise RLEError(f"character {text[position]!r} cannot occur in compressed counts")
            value |= (code & 0x1F) << shift
            more = bool(code & 0x20)
            position += 1
            shift += 5
            if not more and code & 0x10:
                value -= 1 << shift      # sign extension
        if len(counts) > 2:
            value += counts[-2]
        if value < 0:
            raise RLEError(f"run {len(counts)} has a negative length ({value})")
        counts.append(value)
    return counts


def check_counts(counts: list[int], height: int, width: int) -> None:
    """Raise RLEError unless `counts` are non-negative and cover exactly height x width."""
    total = sum(counts)
    if total != height * width:
        raise RLEError(f"the runs cover {total} pixels, but {height}x{width} has "
                       f"{height * width}")


def counts_to_mask(counts, height: int, width: int, column_major: bool = True) -> np.ndarray:
    """The (height, width) bool mask of validated run lengths (0s first)."""
    values = np.zeros(len(counts), dtype=bool)
    values[1::2] = True
    flat = np.repeat(values, np.asarray(counts, dtype=np.int64))
    if column_major:
        return flat.reshape(width, height).T
    return flat.reshape(height, width)


def decode_coco(counts: list[int], text: str | None, height: int, width: int) -> np.ndarray:
    """A COCO RLE as a (height, width) bool mask: pycocotools when installed, else numpy.
    `counts` must have been validated with `check_counts`; `text` is the compressed string the
    file held (None for uncompressed counts)."""
    if _coco_mask is not None:
        if text is None:
            rle = _coco_mask.frPyObjects({"counts": list(counts), "size": [height, width]},
                                         height, width)
        else:
            rle = {"counts": text.encode("ascii"), "size": [height, width]}
        return _coco_mask.decode(rle).astype(bool)
    return counts_to_mask(counts, height, width)


def coco_polygon_mask(xy, height: int, width: int) -> tuple[int, np.ndarray] | None:
    """Pixels of one COCO polygon ``[x0, y0, x1, y1, ...]`` exactly as the COCO API's
    ``frPyObjects`` + ``decode`` give them: (first column, bool block of all rows x the columns
    it spans), or None when it covers no pixel.

    The COCO API walks the outline on a 5x finer grid, keeps one point per column crossing, and
    toggles the mask at each of them in column-major order; the same toggles are computed here
    with numpy and turned into the mask by a running parity.
    """
    points = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(points) < 3:
        return None
    u, v = _dense_outline(points)
    return _toggles_to_mask(u, v, height, width)


_SCALE = 5.0


def _trunc(values) -> np.ndarray:
    """C's (int) cast: rounds towards zero."""
    return np.trunc(values).astype(np.int64)


def _dense_outline(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every point of the polygon's outline on the 5x grid, in order (the COCO API's step 1)."""
    x = _trunc(_SCALE * points[:, 0] + 0.5)
    y = _trunc(_SCALE * points[:, 1] + 0.5)
    xs, ys = x, y
    xe, ye = np.roll(x, -1), np.roll(y, -1)
    us, vs = [], []
    for x0, y0, x1, y1 in zip(xs.tolist(), ys.tolist(), xe.tolist(), ye.tolist()):
        u, v = _segment(x0, y0, x1, y1)
        us.append(u)
        vs.append(v)
    return np.concatenate(us), np.concatenate(vs)


def _segment(x0: int, y0: int, x1: int, y1: int) -> tuple[np.ndarray, np.ndarray]:
    """The grid points of one edge, from (x0, y0) to (x1, y1), stepping along its longer axis
    and rounding the other coordinate as the COCO API does (from the edge's lower end)."""
    dx, dy = abs(x1 - x0), abs(y1 - y0)
    flip = (dx >= dy and x0 > x1) or (dx < dy and y0 > y1)
    if flip:
        x0, y0, x1, y1 = x1, y1, x0, y0
    if dx >= dy:
        t = np.arange(dx + 1)
        t = t[::-1] if flip else t
        slope = (y1 - y0) / dx if dx else 0.0
        return t + x0, _trunc(y0 + slope * t + 0.5)
    t = np.arange(dy + 1)
    t = t[::-1] if flip else t
    slope = (x1 - x0) / dy
    return _trunc(x0 + slope * t + 0.5), t + y0


def _toggles_to_mask(u: np.ndarray, v: np.ndarray, height: int, width: int):
    """Down-sample the column crossings of the outline to pixel toggles (step 2) and fill."""
    moved = np.flatnonzero(u[1:] != u[:-1]) + 1
    column = np.where(u[moved] < u[moved - 1], u[moved], u[moved] - 1)
    xd = (column + 0.5) / _SCALE - 0.5
    row = (np.minimum(v[moved], v[moved - 1]) + 0.5) / _SCALE - 0.5
    keep = (np.floor(xd) == xd) & (xd >= 0) & (xd <= width - 1)
    if not keep.any():
        return None
    cols = xd[keep].astype(np.int64)
    rows = np.ceil(np.clip(row[keep], 0, height)).astype(np.int64)
    first, last = int(cols.min()), int(cols.max())
    positions = (cols - first) * height + rows        # column-major, from the first column
    n_cols = last - first + 1
    toggles = np.bincount(positions, minlength=n_cols * height + 1)[:n_cols * height]
    inside = (np.cumsum(toggles) & 1).astype(bool).reshape(n_cols, height).T
    return first, inside


def polygon_area(xy) -> float:
    """Shoelace area of a flat ``[x0, y0, x1, y1, ...]`` polygon."""
    points = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
    if len(points) < 3:
        return 0.0
    x, y = points[1:, 0] - points[0, 0], points[1:, 1] - points[0, 1]
    return float(abs(np.dot(x[:-1], y[1:]) - np.dot(y[:-1], x[1:])) / 2.0)


def cvat_counts(text: str) -> list[int]:
    """CVAT's ``rle`` attribute ("3, 5, 2") -> run lengths."""
    try:
        counts = [int(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise RLEError(f"'rle' must be comma-separated integers, got {text[:40]!r}") from None
    if any(c < 0 for c in counts):
        raise RLEError("'rle' has a negative run length")
    return counts

