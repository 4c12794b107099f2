"""Class-index masks -> polygons that the converter turns back into the same masks.

The reverse of `rasterize`: each connected component of each class becomes one polygon, so a
person can correct a predicted mask in a polygon tool (VIA) instead of drawing from zero.

- **Tracing**: `skimage.measure.find_contours` at level 0.5 on the component's 0/1 mask. Its
  vertices lie halfway between pixel centres, so no pixel centre is on the traced outline and
  the converter's polygon rule (a pixel belongs to a polygon when its centre is inside, see
  `rasterize`) gives back exactly the component. Components are 4-connected, matching
  find_contours (foreground 4-connected, background 8-connected).
- **Holes**: a polygon tool has no holes, so each hole outline is joined to the outer one by a
  "keyhole" bridge: the path runs from an outer vertex to the nearest hole vertex, around the
  hole and back along the same segment. The bridge is traversed twice, so every scanline crosses
  it an even number of times: the converter's even-odd fill does not see it, and the hole stays
  empty. Hole outlines run the other way round, so the polygon's area is the component's.
- **Simplification**: Douglas-Peucker (`skimage.measure.approximate_polygon`) to `tolerance`
  pixels. Where that would change the object too much (a thin part or a small object whose
  simplified outline collapses), the component is simplified less, down to the exact outline,
  until the converter's pixels of the polygon agree with the component (IoU >= `FIDELITY`).
- **Specks**: components of fewer than `min_area` pixels are left out, and holes of fewer than
  `min_area` pixels are filled: a polygon tool is no place for single-pixel noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from skimage.measure import approximate_polygon, find_contours

from fcn_keras.annotations.rasterize import polygon_footprint

DEFAULT_TOLERANCE = 1.0   # pixels
DEFAULT_MIN_AREA = 16     # pixels: a 4x4 speck
FIDELITY = 0.98           # least IoU of a simplified polygon with its component
_FOUR = ndimage.generate_binary_structure(2, 1)
_EIGHT = ndimage.generate_binary_structure(2, 2)


@dataclass
class ClassPolygon:
    """One component of class `class_index`: its outline (with its holes bridged in) as VIA
    coordinates (x = column, y = row; pixel centres are integers) and its pixel count."""

    class_index: int
    xs: list[float]
    ys: list[float]
    pixels: int


def mask_polygons(mask: np.ndarray, classes=None, tolerance: float = DEFAULT_TOLERANCE,
                  min_area: int = DEFAULT_MIN_AREA, skip=(0,)) -> list[ClassPolygon]:
    """Polygons of every component of every class of `mask` (an (H, W) integer array), largest
    first. `classes`: the class indices to trace (default: every value present but `skip`,
    i.e. background; pass the ignore index there too)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"a mask must be (height, width), got shape {mask.shape}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be 0 or more pixels, got {tolerance}")
    wanted = [int(v) for v in np.unique(mask) if int(v) not in skip] if classes is None \
        else list(classes)
    polygons = []
    for class_index in wanted:
        polygons += class_polygons(mask == class_index, class_index, tolerance, min_area)
    polygons.sort(key=lambda p: -p.pixels)
    return polygons


def class_polygons(pixels: np.ndarray, class_index: int, tolerance: float,
                   min_area: int) -> list[ClassPolygon]:
    """One polygon per 4-connected component of the bool mask `pixels`."""
    labels, count = ndimage.label(pixels, structure=_FOUR)
    polygons = []
    for number, box in enumerate(ndimage.find_objects(labels), 1):
        component = labels[box] == number
        size = int(np.count_nonzero(component))
        if size < min_area:
            continue
        component = _fill_small_holes(component, min_area)
        xs, ys = component_polygon(component, tolerance)
        top, left = box[0].start, box[1].start
        polygons.append(ClassPolygon(class_index, [x + left for x in xs],
                                     [y + top for y in ys], int(component.sum())))
    return polygons


def _fill_small_holes(component: np.ndarray, min_area: int) -> np.ndarray:
    """The component with its holes of fewer than `min_area` pixels filled."""
    holes, count = ndimage.label(_filled(component) & ~component, structure=_EIGHT)
    if not count:
        return component
    sizes = ndimage.sum_labels(np.ones_like(holes), holes, range(1, count + 1))
    small = np.flatnonzero(sizes < min_area) + 1
    return component | np.isin(holes, small)


def _filled(component: np.ndarray) -> np.ndarray:
    """The component with every hole filled; background reaching the border 8-connectedly is
    outside (the background connectivity of find_contours)."""
    return ndimage.binary_fill_holes(component, structure=_EIGHT)


def component_polygon(component: np.ndarray, tolerance: float) -> tuple[list[float], list[float]]:
    """(xs, ys) of one polygon, holes bridged in, whose converter pixels are `component`
    (IoU >= FIDELITY; exactly, when even the exact outline is needed)."""
    outer = _rings(_filled(component))
    holes = _rings(_filled(component) & ~component)
    step = tolerance
    while True:
        path = _bridged([_simplified(r, step) for r in outer],
                        [_simplified(r, step) for r in holes])
        if step == 0 or _agreement(path, component) >= FIDELITY:
            return [round(float(x), 3) for x in path[:, 1]], [round(float(y), 3)
                                                              for y in path[:, 0]]
        step = step / 2 if step > 0.1 else 0.0


def _rings(pixels: np.ndarray) -> list[np.ndarray]:
    """Closed outlines (row, col) of a bool mask, without the repeated last vertex, pointing
    counter-clockwise on screen (positive shoelace area in (col, row) coordinates)."""
    padded = np.pad(pixels.astype(np.float32), 1)
    rings = []
    for contour in find_contours(padded, 0.5):
        ring = contour[:-1] - 1.0
        if len(ring) >= 3:
            rings.append(ring if _signed_area(ring) > 0 else ring[::-1])
    return rings


def _signed_area(ring: np.ndarray) -> float:
    """Shoelace area with x = column, y = row."""
    x, y = ring[:, 1], ring[:, 0]
    return float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))) / 2.0


def _simplified(ring: np.ndarray, tolerance: float) -> np.ndarray:
    """Douglas-Peucker on a closed ring; at 0 only collinear vertices go (the same outline). A
    ring that would collapse to a line (a thin part) keeps its exact outline."""
    closed = np.vstack([ring, ring[:1]])
    for step in (tolerance, 0.0):
        simple = approximate_polygon(closed, tolerance=max(step, 1e-6))[:-1]
        if len(simple) >= 3:
            return simple
    return ring


def _bridged(outers: list[np.ndarray], holes: list[np.ndarray]) -> np.ndarray:
    """One vertex path: the outer ring (the largest, when tracing found several) with each other
    ring joined by a bridge from its nearest vertex to the nearest vertex of the path so far;
    holes are walked the other way round."""
    outers = sorted(outers, key=lambda r: -abs(_signed_area(r)))
    path = outers[0]
    for ring in outers[1:] + [h[::-1] for h in holes]:
        path = _join(path, ring)
    return path


def _join(path: np.ndarray, ring: np.ndarray) -> np.ndarray:
    """`path` with `ring` spliced in at their closest pair of vertices (a keyhole bridge)."""
    from scipy.spatial import cKDTree
    distances, nearest = cKDTree(path).query(ring)
    j = int(np.argmin(distances))          # vertex of the ring
    i = int(nearest[j])                    # vertex of the path
    loop = np.vstack([ring[j:], ring[:j + 1]])   # around the ring, back to where it started
    return np.vstack([path[:i + 1], loop, path[i:]])


def _agreement(path: np.ndarray, component: np.ndarray) -> float:
    """IoU of the converter's pixels of the polygon with the component."""
    height, width = component.shape
    drawn = np.zeros_like(component)
    footprint = polygon_footprint(path[:, 1], path[:, 0], height, width)
    if footprint is not None:
        footprint.paint(drawn, True)
    union = np.count_nonzero(drawn | component)
    return np.count_nonzero(drawn & component) / union if union else 1.0
