"""Shapes of objects standing on the table, drawn supersampled: a `Frame` is an object's patch of
the image in its own upright coordinates, a `Sprite` the finished object (its coverage of the
patch and a painter), a `Spec` an object chosen but not yet placed. Bodies of revolution
(bottles, cans, mugs) and upright boxes (cartons, books) are built here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

SUPERSAMPLE = 3          # sub-pixels per pixel side, for smooth edges and textures


@dataclass
class Frame:
    """A supersampled patch of the image and its points in an object's upright local frame
    (origin at the object's base, y down, in pixels)."""

    x0: int               # the patch: its top-left pixel and size
    y0: int
    w: int
    h: int
    image_x: np.ndarray   # image coordinates of each sub-pixel
    image_y: np.ndarray
    local_x: np.ndarray   # the same sub-pixels in the object's frame
    local_y: np.ndarray
    base_x: float         # image point of the object's base
    base_y: float


@dataclass
class Sprite:
    """One object ready to composite: its coverage of its patch and a painter for the patch."""

    class_id: int  # 0 for clutter
    depth: float   # image row of the base: larger is nearer the camera
    x0: int
    y0: int
    coverage: np.ndarray
    paint: Callable[[np.ndarray], np.ndarray]  # canvas -> RGB of the patch
    shadow: tuple | None = None  # (x, y, radius, ellipse ratio, height), pixels
    flat: bool = False


@dataclass
class Spec:
    """An object chosen but not yet placed: its size decides where it may stand."""

    class_id: int
    height: float   # cm
    radius: float   # cm, footprint on the table
    build: Callable  # (cam, light, x, y, tilt) -> Sprite | None
    flat: bool = False
    tilts: bool = True


def make_frame(cam, base_x, base_y, left, right, top, bottom, tilt=0.0):
    c, s = math.cos(tilt), math.sin(tilt)
    corners = np.array([[left, top], [right, top], [left, bottom], [right, bottom]])
    xs = base_x + c * corners[:, 0] - s * corners[:, 1]
    ys = base_y + s * corners[:, 0] + c * corners[:, 1]
    x0, x1 = max(int(math.floor(xs.min())) - 1, 0), min(int(math.ceil(xs.max())) + 2, cam.width)
    y0, y1 = max(int(math.floor(ys.min())) - 1, 0), min(int(math.ceil(ys.max())) + 2, cam.height)
    if x1 <= x0 or y1 <= y0:
        return None
    n = SUPERSAMPLE
    sub_x = x0 + (np.arange((x1 - x0) * n, dtype=np.float32) + 0.5) / n - 0.5
    sub_y = y0 + (np.arange((y1 - y0) * n, dtype=np.float32) + 0.5) / n - 0.5
    image_x, image_y = np.meshgrid(sub_x, sub_y)
    dx, dy = image_x - base_x, image_y - base_y
    return Frame(x0, y0, x1 - x0, y1 - y0, image_x, image_y, c * dx + s * dy, -s * dx + c * dy,
                 base_x, base_y)


def box_mean(a, n=SUPERSAMPLE):
    h, w = a.shape[0] // n, a.shape[1] // n
    return a.reshape((h, n, w, n) + a.shape[2:]).mean(axis=(1, 3))


def make_sprite(class_id, depth, frame, inside, colour, shadow=None, flat=False):
    """Antialias: average coverage and coverage-weighted colour over the sub-pixels."""
    if frame is None:
        return None
    weight = inside.astype(np.float32)
    coverage = box_mean(weight)
    if coverage.max() <= 0:
        return None

    def paint(canvas):
        rgb = box_mean(colour(canvas) * weight[..., None])
        return rgb / np.maximum(coverage, 1e-6)[..., None]
    return Sprite(class_id, depth, frame.x0, frame.y0, coverage, paint, shadow, flat)


@dataclass
class Surface:
    """Front-surface coordinates of a body of revolution seen slightly from above."""

    v: np.ndarray          # height on the body, 0 at the base, 1 at the top
    phi: np.ndarray        # azimuth of the surface normal, 0 towards the camera
    side: np.ndarray       # on the body's side
    top: np.ndarray        # on its top face (an ellipse)
    ellipse_x: np.ndarray  # top-ellipse coordinates, the rim at ellipse_x^2 + ellipse_y^2 = 1
    ellipse_y: np.ndarray
    height: float          # pixels
    radius: float          # pixels


def revolve(frame, height, radius, profile, ratio):
    """Where each point of the patch lies on a body with radius profile r(v).

    A circle of radius r at height v projects to an ellipse of half-axes r and ratio * r; the
    front half of it is the visible side. A point at local x on the front curve of height v has
    y = -v * height + ratio * sqrt(r(v)^2 - x^2); a few fixed-point steps solve it for v.
    """
    heights, radii = profile
    local_x, local_y = frame.local_x, frame.local_y
    r = np.full(local_x.shape, radii.max() * radius, np.float32)
    for _ in range(3):
        v = (-local_y + ratio * np.sqrt(np.maximum(r * r - local_x * local_x, 0))) / height
        r = np.interp(v, heights, radii).astype(np.float32) * radius
    side = (v >= 0) & (v <= 1) & (np.abs(local_x) <= r)
    phi = np.arcsin(np.clip(local_x / np.maximum(r, 1e-6), -1, 1))
    top_r = radii[-1] * radius
    ellipse_x, ellipse_y = local_x / top_r, (local_y + height) / (ratio * top_r)
    top = (ellipse_x * ellipse_x + ellipse_y * ellipse_y <= 1) & ~side
    return Surface(v, phi, side, top, ellipse_x, ellipse_y, height, radius)


def build_revolve(cam, base_x, base_y, tilt, height_cm, radius_cm, profile, class_id, colour,
                  extra_width=0.0, extra=None):
    """A standing body of revolution: its frame, surface and sprite. `extra(frame, surf)` may
    add parts (a mug's handle) to the silhouette."""
    s, ratio = cam.scale(base_y), cam.ellipse_ratio(base_y)
    height, radius = s * height_cm * math.sqrt(1 - ratio ** 2), s * radius_cm
    r_max = radius * profile[1].max()
    half = r_max + extra_width * radius
    frame = make_frame(cam, base_x, base_y, -half, half, -height - ratio * r_max, ratio * r_max,
                       tilt)
    if frame is None:
        return None
    surface = revolve(frame, height, radius, profile, ratio)
    inside = surface.side | surface.top
    if extra is not None:
        inside = inside | extra(frame, surface)
    shadow = (base_x, base_y, radius, ratio, height)
    return make_sprite(class_id, base_y, frame, inside,
                       lambda canvas: colour(frame, surface, canvas), shadow)


def profile_from(points, n=160):
    """A radius profile sampled densely from (v, r) control points (smooth between them)."""
    heights, radii = np.array(points, np.float32).T
    v = np.linspace(0, 1, n, dtype=np.float32)
    r = np.interp(v, heights, radii)
    kernel = np.ones(5, np.float32) / 5
    r = np.convolve(np.pad(r, 2, mode="edge"), kernel, "valid")
    return v, r.astype(np.float32)


def cylinder_label(surface, phase, radius_cm, height_cm):
    """Label coordinates in centimetres: around the cylinder and up from its base."""
    circumference = 2 * np.pi * radius_cm
    x = ((surface.phi + phase) * radius_cm) % circumference
    return x, surface.v * height_cm, circumference


def top_light(light, ellipse_x):
    """Brightness of an upward face, a little brighter on the side the light comes from."""
    return (light.ambient + (1 - light.ambient) * (0.35 + 0.45 * math.sin(light.elevation))
            + 0.12 * ellipse_x * math.sin(light.azimuth))


def see_through(frame, canvas, base_x, lens):
    """What a water-filled cylinder shows of the scene behind it: mirrored and squeezed."""
    h, w = canvas.shape[:2]
    src_x = np.clip(np.rint(base_x - (frame.image_x - base_x) * lens), 0, w - 1).astype(np.int32)
    src_y = np.clip(np.rint(frame.image_y), 0, h - 1).astype(np.int32)
    return canvas[src_y, src_x]


BOX_FACES = {  # origin, u edge, v edge, outward normal; in units of (width, height, depth) / 2
    "front": ((-1, 0, 1), (2, 0, 0), (0, 2, 0), (0, 0, 1)),
    "right": ((1, 0, 1), (0, 0, -2), (0, 2, 0), (1, 0, 0)),
    "back": ((1, 0, -1), (-2, 0, 0), (0, 2, 0), (0, 0, -1)),
    "left": ((-1, 0, -1), (0, 0, 2), (0, 2, 0), (-1, 0, 0)),
    "top": ((-1, 2, 1), (2, 0, 0), (0, 0, -2), (0, 1, 0)),
}


def box_spec(rng, light, class_id, width, height, depth, faces, gloss=0.1, lift=0.0, yaw=None):
    """An upright box turned by `yaw` about its vertical axis, standing `lift` cm above the
    table; `faces[name](x, y)` prints each face in centimetre coordinates."""
    yaw = rng.uniform(-1.0, 1.0) if yaw is None else yaw
    half = np.array([width, height, depth], np.float32) / 2

    def build(cam, base_x, base_y, tilt):
        s, ratio = cam.scale(base_y), cam.ellipse_ratio(base_y)
        project = box_projection(s, ratio, yaw, lift)
        corners = np.array([project(np.array([sx, sy, sz]) * half)
                            for sx in (-1, 1) for sy in (0, 2) for sz in (-1, 1)])
        frame = make_frame(cam, base_x, base_y, corners[:, 0].min(), corners[:, 0].max(),
                           corners[:, 1].min(), corners[:, 1].max())
        if frame is None:
            return None
        parts = box_faces(frame, project, half, yaw)
        inside = np.logical_or.reduce([part[1] for part in parts])
        height_px = s * (height + lift) * math.sqrt(1 - ratio ** 2)
        shadow = None if lift else (base_x, base_y, s * 0.5 * math.hypot(width, depth), ratio,
                                    height_px)
        def colour(canvas):
            return box_colour(parts, faces, light, gloss, frame.local_x.shape)

        return make_sprite(class_id, base_y + s * lift * 0.01, frame, inside, colour, shadow)
    radius = 0.5 * math.hypot(width, depth)
    return Spec(class_id, height + lift, radius, build, tilts=False)


def box_projection(s, ratio, yaw, lift):
    """Box coordinates (cm; x right, y up, z towards the camera) to pixels from the base."""
    cos_b, cy, sy = math.sqrt(1 - ratio ** 2), math.cos(yaw), math.sin(yaw)

    def project(p):
        x, z = p[0] * cy + p[2] * sy, -p[0] * sy + p[2] * cy
        return np.array([s * x, s * (-(p[1] + lift) * cos_b + z * ratio)], np.float32)
    return project


def box_faces(frame, project, half, yaw):
    """The faces the camera sees, each with its sub-pixels and face coordinates in [0, 1]."""
    cy, sy = math.cos(yaw), math.sin(yaw)
    parts = []
    for name, (origin, u, v, normal) in BOX_FACES.items():
        turned = np.array([normal[0] * cy + normal[2] * sy, normal[1],
                           -normal[0] * sy + normal[2] * cy], np.float32)
        if name != "top" and turned[2] <= 0:
            continue
        origin, u, v = np.array(origin), np.array(u), np.array(v)
        o = project(origin * half)
        a, b = project((origin + u) * half) - o, project((origin + v) * half) - o
        det = a[0] * b[1] - a[1] * b[0]
        px, py = frame.local_x - o[0], frame.local_y - o[1]
        fu, fv = (px * b[1] - py * b[0]) / det, (a[0] * py - a[1] * px) / det
        inside = (fu >= 0) & (fu <= 1) & (fv >= 0) & (fv <= 1)
        sizes = np.abs(u * half).sum(), np.abs(v * half).sum()
        parts.append((name, inside, fu, fv, sizes, turned))
    return parts


def box_colour(parts, faces, light, gloss, shape):
    rgb = np.zeros(shape + (3,), np.float32)
    to_light = light.vector()
    for name, inside, fu, fv, (size_u, size_v), normal in parts:
        printed = faces[name](fu[inside] * size_u, fv[inside] * size_v)
        lambert = max(float(normal @ to_light), 0.0)
        shade = light.ambient + (1 - light.ambient) * lambert
        mirror = 2 * normal[2] * normal - np.array([0, 0, 1], np.float32)
        specular = gloss * max(float(mirror @ to_light), 0.0) ** 8
        edge = np.minimum(np.minimum(fu[inside], 1 - fu[inside]) * size_u,
                          np.minimum(fv[inside], 1 - fv[inside]) * size_v)
        crease = 1 - 0.2 * np.clip(1 - edge / 0.25, 0, 1)
        rgb[inside] = printed * (shade * crease)[:, None] + specular
    return rgb * light.tint
