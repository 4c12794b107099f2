#!/usr/bin/env python
"""Draw a synthetic "drinks" dataset in the layout of the book's chapter 12.

The book trains its FCN on photos of water bottles, soda cans and juice cans standing on a table,
annotated with polygons in VGG Image Annotator (VIA) 2.x. Those photos cannot ship with this
project, so this script paints look-alikes: a wall and a table seen in perspective, lit from one
side, with drinks and non-drink clutter standing on it, then a camera's blur, noise and JPEG. The
drink classes differ by shape (a tall bottle with a neck and cap, a squat can, a slim can or a
carton) while their colours overlap on purpose, with each other and with the clutter, so a model
has to learn shapes rather than colours.

Each drink is annotated with the polygon of its visible part: objects are painted back to front,
the visible coverage of each drink is what the objects in front leave of it, and its 0.5 contour
(`skimage.measure.find_contours`, pixel centres at integer coordinates) is simplified into the
polygon. Regions are listed back to front, so both `--draw-order file` and "larger regions first"
rasterise them to the same mask.

Output (the book's layout): `<stem>.jpg` images, `segmentation_train.json` and
`segmentation_test.json` in VIA 2.x export format (keys are filename + file size, region
attribute ``{"name": "1" | "2" | "3"}``), and `classes.json`.

    python utils/make_sample_dataset.py --out data/drinks --train 160 --test 40 \\
        --width 320 --height 240 --seed 0

The output depends only on the arguments: image i is drawn from its own generator seeded with
(seed, i).
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from skimage.measure import approximate_polygon, find_contours

CLASS_NAMES = ["background", "water bottle", "soda can", "juice can"]
CLASS_COLORS = [(0, 0, 0), (0, 114, 189), (217, 83, 25), (237, 177, 32)]
IGNORE_INDEX = 255
WATER_BOTTLE, SODA_CAN, JUICE_CAN = 1, 2, 3

SUPERSAMPLE = 3          # sub-pixels per pixel side, for smooth edges and textures
POLYGON_TOLERANCE = 0.25  # pixels; the simplified outline stays this close to the traced one
MIN_VISIBLE_FRACTION = 0.3
MIN_DRINK_HEIGHT = 0.14  # of the image height, so every drink is big enough to recognise

PAINTS = {
    "red": (0.80, 0.06, 0.08), "dark red": (0.52, 0.04, 0.08), "blue": (0.08, 0.22, 0.66),
    "light blue": (0.45, 0.70, 0.92), "silver": (0.74, 0.75, 0.78), "green": (0.10, 0.55, 0.22),
    "lime": (0.55, 0.80, 0.15), "orange": (0.98, 0.50, 0.06), "yellow": (0.98, 0.82, 0.12),
    "white": (0.93, 0.93, 0.91), "black": (0.07, 0.07, 0.08), "purple": (0.42, 0.14, 0.55),
    "pink": (0.95, 0.45, 0.62), "brown": (0.45, 0.26, 0.12), "cream": (0.93, 0.87, 0.72),
    "teal": (0.05, 0.55, 0.58), "gold": (0.80, 0.62, 0.22),
}
SODA_PAINTS = ["red"] * 3 + ["blue"] * 2 + ["silver"] * 2 + [
    "green", "black", "orange", "yellow", "purple", "white", "light blue", "dark red", "lime"]
JUICE_PAINTS = ["orange"] * 3 + ["yellow"] * 2 + [
    "green", "lime", "red", "red", "pink", "purple", "white", "dark red", "blue", "silver"]
BOTTLE_LABEL_PAINTS = ["blue", "light blue", "white", "red", "green", "silver", "pink", "teal"]
CAP_PAINTS = ["blue", "white", "light blue", "green", "red", "black", "teal"]
WALL_PAINTS = [(0.90, 0.88, 0.82), (0.85, 0.85, 0.86), (0.86, 0.80, 0.68), (0.66, 0.74, 0.64),
               (0.62, 0.74, 0.84), (0.76, 0.50, 0.38), (0.22, 0.27, 0.38), (0.55, 0.55, 0.56),
               (0.95, 0.94, 0.90), (0.80, 0.70, 0.75)]
WOODS = [(0.62, 0.42, 0.24), (0.45, 0.28, 0.15), (0.75, 0.58, 0.38), (0.30, 0.18, 0.10),
         (0.85, 0.78, 0.66), (0.55, 0.36, 0.20)]


# ----------------------------------------------------------------------------- scene setup

@dataclass
class Camera:
    """Where the table lies in the image and how big a centimetre is at each image row."""

    width: int
    height: int
    y_edge: float   # image row of the far edge of the table
    y_vanish: float  # image row where the table plane vanishes
    focal: float    # focal length in pixels
    k: float        # pixels per centimetre per row below y_vanish

    def scale(self, y):
        """Pixels per centimetre for something standing on the table at image row y."""
        return self.k * (y - self.y_vanish)

    def ellipse_ratio(self, y):
        """How flat the top of a can looks: the sine of the angle we look down at row y."""
        return float(np.clip(math.sin(math.atan((y - self.y_vanish) / self.focal)), 0.06, 0.42))

    def table_point(self, x, y):
        """Table coordinates in cm (across, depth) of the image point (x, y) on the table."""
        s = self.scale(y)
        return (x - self.width / 2) / s, self.focal / s


@dataclass
class Light:
    """One light: azimuth 0 is the camera's direction, positive from the right."""

    azimuth: float
    elevation: float
    ambient: float
    towards_camera: float  # how far shadows fall forward (+) or backward (-)
    tint: np.ndarray

    def vector(self):
        ce = math.cos(self.elevation)
        return np.array([math.sin(self.azimuth) * ce, math.sin(self.elevation),
                         math.cos(self.azimuth) * ce], np.float32)

    def cylinder(self, phi):
        """Diffuse light on a vertical cylinder at azimuth phi (soft wrap-around falloff)."""
        d = 0.5 + 0.5 * np.cos(phi - self.azimuth)
        return self.ambient + (1 - self.ambient) * d * d

    def highlight(self, phi, width):
        """The specular stripe of a vertical cylinder, half-way between light and viewer."""
        return np.exp(-((phi - 0.5 * self.azimuth) / width) ** 2)


def sample_camera(rng, width, height):
    y_edge = height * rng.uniform(0.22, 0.55)
    y_vanish = y_edge - height * rng.uniform(0.04, 0.6)
    focal = width * rng.uniform(0.8, 1.3)
    can_at_bottom = rng.uniform(0.3, 0.55)  # soda-can height as a fraction of the image height
    k = can_at_bottom * height / (12.2 * (height - y_vanish))
    return Camera(width, height, y_edge, y_vanish, focal, k)


def sample_light(rng):
    warm = rng.uniform(-1, 1)
    tint = np.array([1 + 0.06 * warm, 1.0, 1 - 0.08 * warm], np.float32)
    azimuth = rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.25)
    return Light(azimuth=azimuth, elevation=rng.uniform(0.5, 1.0), ambient=rng.uniform(0.28, 0.5),
                 towards_camera=rng.uniform(-0.8, 0.5), tint=tint)


def jitter_paint(rng, name_or_rgb, amount=0.07):
    """A paint with some random variation, so no class owns an exact colour."""
    rgb = np.array(PAINTS[name_or_rgb] if isinstance(name_or_rgb, str) else name_or_rgb,
                   np.float32)
    rgb = rgb * rng.normal(1.0, amount, 3) * rng.uniform(0.85, 1.08)
    return np.clip(rgb, 0.02, 1.0).astype(np.float32)


def pick_paint(rng, names, amount=0.07):
    return jitter_paint(rng, names[rng.integers(len(names))], amount)


# ----------------------------------------------------------------------------- textures

def periodic_noise(rng, n=128, power=2.2):
    """Tileable smooth noise in [0, 1] (white noise with a 1/f^power spectrum)."""
    spectrum = np.fft.fft2(rng.standard_normal((n, n)))
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n)))
    f[0, 0] = 1.0
    tex = np.real(np.fft.ifft2(spectrum / f ** (power / 2)))
    tex = (tex - tex.min()) / (np.ptp(tex) + 1e-9)
    return tex.astype(np.float32)


def sample_texture(tex, a, b):
    """Bilinear lookup of a tileable texture at coordinates (a, b) measured in tiles."""
    n = tex.shape[0]
    a = (np.asarray(a, np.float32) % 1.0) * n
    b = (np.asarray(b, np.float32) % 1.0) * n
    i0, j0 = a.astype(np.int32) % n, b.astype(np.int32) % n
    i1, j1 = (i0 + 1) % n, (j0 + 1) % n
    fa, fb = a - np.floor(a), b - np.floor(b)
    top = tex[j0, i0] * (1 - fa) + tex[j0, i1] * fa
    bottom = tex[j1, i0] * (1 - fa) + tex[j1, i1] * fa
    return top * (1 - fb) + bottom * fb


def smooth_sample(tex, a, b, step=4):
    """`sample_texture` for slowly varying coordinates: sampled every `step` pixels, then
    resized (a quarter of the work for the wall and table)."""
    h, w = a.shape
    coarse = sample_texture(tex, a[::step, ::step], b[::step, ::step]).astype(np.float32)
    return np.asarray(Image.fromarray(coarse).resize((w, h), Image.BILINEAR))


def stripes(coord, period, duty, footprint):
    """Anti-aliased stripes (1 on the first `duty` of each period), fading to their mean where
    they get finer than a pixel (`footprint` is the size of a pixel in `coord` units)."""
    phase = (coord / period) % 1.0
    inside = np.minimum(phase, duty - phase)
    outside = np.minimum(phase - duty, 1.0 - phase)
    distance = np.where(phase < duty, inside, -outside) * period
    sharp = np.clip(distance / footprint + 0.5, 0, 1)
    fade = np.clip(1.5 - footprint / period * 2, 0, 1)
    return sharp * fade + duty * (1 - fade)


# ----------------------------------------------------------------------------- background

def draw_wall(rng, cam):
    """A painted, striped, tiled or brick wall; it fills the image, the table covers it later."""
    h, w = cam.height, cam.width
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    rgb = jitter_paint(rng, WALL_PAINTS[rng.integers(len(WALL_PAINTS))], 0.05)
    noise = smooth_sample(periodic_noise(rng), xs / w * 1.5, ys / w * 1.5)
    wall = rgb * (0.93 + 0.1 * noise)[..., None]
    kind = rng.choice(["plain", "stripes", "tiles", "bricks"], p=[0.4, 0.2, 0.25, 0.15])
    if kind == "stripes":
        second = jitter_paint(rng, WALL_PAINTS[rng.integers(len(WALL_PAINTS))], 0.05)
        band = stripes(xs, w * rng.uniform(0.04, 0.15), 0.5, 1.0)[..., None]
        wall = wall * (1 - 0.5 * band) + 0.5 * band * second
    elif kind in ("tiles", "bricks"):
        wall = wall * grout(rng, xs, ys, w, kind)[..., None]
    wall *= (1 - rng.uniform(-0.15, 0.25) * (ys / h))[..., None]
    add_picture(rng, wall, cam)
    return wall


def grout(rng, xs, ys, w, kind):
    """Brightness of tiles or bricks with darker joints between them."""
    size = w * rng.uniform(0.05, 0.12)
    tile_h = size * (0.45 if kind == "bricks" else 1.0)
    row = np.floor(ys / tile_h)
    shift = np.where(row % 2 == 1, 0.5 * size, 0.0) if kind == "bricks" else 0.0
    column = np.floor((xs + shift) / size)
    tone = 1 + 0.05 * np.sin(column * 12.9898 + row * 78.233)
    dx = (0.5 - np.abs(((xs + shift) / size) % 1 - 0.5)) * size
    dy = (0.5 - np.abs((ys / tile_h) % 1 - 0.5)) * tile_h
    joint = np.clip(np.minimum(dx, dy) - 0.4 * w / 640, 0, 1)
    return tone * (0.72 + 0.28 * joint)


def add_picture(rng, wall, cam):
    """A framed picture or a bright window on the wall: big areas of drink-like colours."""
    if rng.random() > 0.45 or cam.y_edge < 0.3 * cam.height:
        return
    img = Image.new("L", (cam.width, cam.height), 0)
    w = cam.width * rng.uniform(0.15, 0.45)
    h = cam.y_edge * rng.uniform(0.5, 1.3)
    x0 = rng.uniform(-0.2 * w, cam.width - 0.8 * w)
    y0 = rng.uniform(-0.3 * h, max(cam.y_edge - h, 0) + 1)
    ImageDraw.Draw(img).rectangle([x0, y0, x0 + w, y0 + h], fill=255)
    mask = np.asarray(img, np.float32)[..., None] / 255
    inner_img = Image.new("L", (cam.width, cam.height), 0)
    m = 0.06 * min(w, h)
    ImageDraw.Draw(inner_img).rectangle([x0 + m, y0 + m, x0 + w - m, y0 + h - m], fill=255)
    inner = np.asarray(inner_img, np.float32)[..., None] / 255
    frame = pick_paint(rng, ["white", "black", "brown", "gold"])
    ys, xs = np.mgrid[0:cam.height, 0:cam.width].astype(np.float32)
    c1, c2 = pick_paint(rng, list(PAINTS)), pick_paint(rng, list(PAINTS))
    t = (0.5 + 0.5 * np.sin(xs / w * rng.uniform(2, 9) + ys / h * rng.uniform(-4, 4)))[..., None]
    art = c1 * t + c2 * (1 - t)
    if rng.random() < 0.4:  # a window: bright, bluish
        art = np.clip(np.array([0.85, 0.92, 1.0], np.float32) * (1.1 + 0.1 * t), 0, 1.3)
    wall[:] = wall * (1 - mask) + mask * (frame * (1 - inner) + art * inner)


def draw_table(rng, cam):
    """The table top in perspective: textures are laid out in centimetres on the table plane."""
    h, w = cam.height, cam.width
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    s = np.maximum(cam.scale(np.maximum(ys, cam.y_edge)), 1e-3)
    across, depth = (xs - w / 2) / s, cam.focal / s
    footprint = 1.0 / s  # centimetres per pixel, to fade detail finer than a pixel
    kind = rng.choice(["wood", "cloth", "gingham", "stone", "plain"],
                      p=[0.4, 0.2, 0.12, 0.13, 0.15])
    noise = periodic_noise(rng)
    if kind == "wood":
        table = wood(rng, noise, across, depth, footprint)
    elif kind == "gingham":
        table = gingham(rng, across, depth, footprint)
    elif kind == "stone":
        veins = np.abs(np.sin(across * 0.05 + depth * 0.03 + 9 * smooth_sample(
            noise, across / 80, depth / 80))) ** 0.25
        base = jitter_paint(rng, [(0.9, 0.9, 0.88), (0.3, 0.3, 0.32), (0.8, 0.75, 0.68)][
            rng.integers(3)], 0.03)
        table = base * (0.75 + 0.25 * veins)[..., None]
    else:
        base = pick_paint(rng, list(PAINTS) if kind == "cloth" else ["white", "cream", "silver",
                                                                       "black", "teal", "red"])
        table = base * (0.9 + 0.12 * smooth_sample(noise, across / 60, depth / 60))[..., None]
    folds = smooth_sample(periodic_noise(rng, 64), across / 90, depth / 90)
    amount = 0.25 if kind in ("cloth", "gingham") else 0.06
    table = table * (1 - amount + amount * folds)[..., None]
    distance = 1 - (ys - cam.y_edge) / (h - cam.y_edge + 1)
    table *= (1 - rng.uniform(-0.1, 0.3) * distance)[..., None]
    return table


def wood(rng, noise, across, depth, footprint):
    along, cross = (depth, across) if rng.random() < 0.6 else (across, depth)
    board_w = rng.uniform(8, 22)
    board = np.floor(cross / board_w).astype(np.int32)
    tones = rng.uniform(0.85, 1.12, 64).astype(np.float32)[board % 64]
    offsets = rng.uniform(0, 1, 64).astype(np.float32)[board % 64]
    freq = rng.uniform(0.5, 1.4)
    g = cross * freq + 5 * sample_texture(noise, along / 150 + offsets, cross / 40)
    ring = (0.5 + 0.5 * np.sin(2 * np.pi * g)) ** 3
    detail = np.clip(1.5 - 3 * footprint * freq, 0, 1)
    grain = 0.85 + 0.2 * (ring * detail + 0.35 * (1 - detail))
    gap = 1 - 0.45 * stripes(cross, board_w, 0.04, footprint)
    base = jitter_paint(rng, WOODS[rng.integers(len(WOODS))], 0.04)
    return base * (grain * tones * gap)[..., None]


def gingham(rng, across, depth, footprint):
    period = rng.uniform(1.5, 4.0)
    a = stripes(across, period, 0.5, footprint)
    b = stripes(depth, period, 0.5, footprint)
    colour = pick_paint(rng, ["red", "blue", "green", "black", "orange", "yellow"])
    white = np.array([0.95, 0.94, 0.92], np.float32)
    mid = 0.5 * (colour + white)
    both, one = (a * b)[..., None], (a + b - 2 * a * b)[..., None]
    return white * (1 - both - one) + mid * one + colour * both


def draw_background(rng, cam):
    """The wall, out of focus, meeting the table at `y_edge` in a soft contact shadow."""
    wall = draw_wall(rng, cam)
    blur = rng.uniform(0.5, 2.5) * cam.width / 640
    wall = blur_float(wall, blur)
    table = draw_table(rng, cam)
    ys = np.arange(cam.height, dtype=np.float32)[:, None, None]
    on_table = np.clip(ys - cam.y_edge + 0.5, 0, 1)
    contact = 1 - 0.35 * np.exp(-np.maximum(cam.y_edge - ys, 0) / (0.02 * cam.height + 1))
    canvas = wall * contact * (1 - on_table) + table * on_table
    return canvas.astype(np.float32)


def blur_float(rgb, radius):
    """Gaussian blur of a float image through 8-bit PIL (fast; precision is plenty here)."""
    if radius < 0.2:
        return rgb
    img = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.asarray(img.filter(ImageFilter.GaussianBlur(radius)), np.float32) / 255


# ----------------------------------------------------------------------------- printed designs

def wrap_dx(x, x0, circumference):
    """Horizontal distance on a label that wraps around a cylinder (None: a flat face)."""
    if circumference is None:
        return x - x0
    return (x - x0 + circumference / 2) % circumference - circumference / 2


def mark_wave(rng, width, height):
    centre, amp = height * rng.uniform(0.3, 0.7), height * rng.uniform(0.0, 0.12)
    half, phase, waves = height * rng.uniform(0.05, 0.16), rng.uniform(0, 6.3), rng.integers(1, 3)
    return lambda x, y: np.abs(
        y - centre - amp * np.sin(2 * np.pi * waves * x / width + phase)) < half


def mark_stripe(rng, width, height):
    slope, period = rng.uniform(-1.2, 1.2), width / rng.integers(1, 4)
    duty, offset = rng.uniform(0.15, 0.45), rng.uniform(0, 1)
    return lambda x, y: ((x + slope * y) / period + offset) % 1.0 < duty


def mark_circle(rng, width, height, wraps, scale=1.0):
    x0, y0 = rng.uniform(0, width), height * rng.uniform(0.35, 0.7)
    radius = min(width, height) * rng.uniform(0.15, 0.32) * scale
    return lambda x, y: wrap_dx(x, x0, wraps) ** 2 + (y - y0) ** 2 < radius ** 2


def mark_lower(rng, width, height):
    level, amp = height * rng.uniform(0.15, 0.45), height * rng.uniform(0, 0.1)
    phase = rng.uniform(0, 6.3)
    return lambda x, y: y < level + amp * np.sin(2 * np.pi * x / width + phase)


def mark_glyphs(rng, width, height, wraps):
    n = int(rng.integers(3, 8))
    pitch = min(width, height) * rng.uniform(0.06, 0.11)
    x0, y0 = rng.uniform(0, width), height * rng.uniform(0.25, 0.8)
    tall = np.concatenate([[0], rng.uniform(0.5, 1.0, n), [0]]).astype(np.float32)

    def mask(x, y):
        t = wrap_dx(x, x0, wraps) / pitch
        index = np.clip(np.floor(t) + 1, 0, n + 1).astype(np.int32)
        return (t % 1.0 < 0.7) & (np.abs(y - y0) < 0.7 * pitch * tall[index])
    return mask


def fruit_marks(rng, width, height, wraps):
    """An orange slice or a whole fruit with a leaf: the juice-label cliche."""
    x0, y0 = rng.uniform(0, width), height * rng.uniform(0.3, 0.6)
    radius = min(width, height) * rng.uniform(0.18, 0.3)
    fruit = pick_paint(rng, ["orange", "red", "yellow", "lime", "purple", "pink", "green"])
    white = np.array([0.95, 0.93, 0.85], np.float32)

    def polar(x, y):
        dx, dy = wrap_dx(x, x0, wraps), y - y0
        return np.hypot(dx, dy) / radius, np.arctan2(dy, dx)
    marks = [(lambda x, y: polar(x, y)[0] < 1.0, fruit)]
    if rng.random() < 0.6:
        marks.append((lambda x, y: (polar(x, y)[0] > 0.82) & (polar(x, y)[0] < 0.9), white))
        marks.append((lambda x, y: (polar(x, y)[0] < 0.8)
                      & (np.abs((polar(x, y)[1] * 8 / (2 * np.pi)) % 1.0 - 0.5) > 0.44), white))
    else:
        leaf = pick_paint(rng, ["green", "lime"])
        lx, ly = x0 + 0.5 * radius, y0 + 1.1 * radius
        marks.append((lambda x, y: (wrap_dx(x, lx, wraps) / (0.5 * radius)) ** 2
                      + ((y - ly) / (0.25 * radius)) ** 2 < 1, leaf))
    return marks


def label_design(rng, base, palette, width, height, wraps, style):
    """A printed design: a base colour and coloured marks in centimetre label coordinates."""
    second = pick_paint(rng, palette)
    accent = pick_paint(rng, ["white", "white", "yellow", "black", "silver", "red"])
    marks = []
    pick = rng.integers(4) if style != "juice" else rng.integers(2, 4)
    if pick == 0:
        marks.append((mark_wave(rng, width, height), second))
    elif pick == 1:
        marks.append((mark_stripe(rng, width, height), second))
    elif pick == 2:
        marks.append((mark_lower(rng, width, height), second))
    else:
        marks.append((mark_circle(rng, width, height, wraps), second))
    if style == "juice":
        marks += fruit_marks(rng, width, height, wraps)
    if rng.random() < 0.85:
        marks.append((mark_glyphs(rng, width, height, wraps), accent))
    if rng.random() < 0.4:
        marks.append((mark_glyphs(rng, width, height, wraps), accent))

    def paint(x, y):
        rgb = np.broadcast_to(base, x.shape + (3,)).copy()
        for mask, colour in marks:
            rgb[mask(x, y)] = colour
        return rgb
    return paint


def metal_env(rng):
    """What a shiny cylinder reflects, by azimuth: a few bright windows over a grey room."""
    grid = np.linspace(-np.pi / 2, np.pi / 2, 41)
    env = 0.35 + 0.15 * np.convolve(rng.standard_normal(45), np.ones(5) / 5, "valid")
    for _ in range(rng.integers(1, 4)):
        env += rng.uniform(0.2, 0.6) * np.exp(-((grid - rng.uniform(-1.4, 1.4)) / 0.1) ** 2)
    env *= 1 - 0.5 * (np.abs(grid) / (np.pi / 2)) ** 3
    env = env.astype(np.float32)
    return lambda phi: np.interp(phi, grid, env).astype(np.float32)


# ----------------------------------------------------------------------------- geometry

@dataclass
class Frame:
    """A supersampled patch of the image and its points in an object's upright local frame
    (origin at the object's base, y down, in pixels)."""

    x0: int
    y0: int
    w: int
    h: int
    X: np.ndarray
    Y: np.ndarray
    lx: np.ndarray
    ly: np.ndarray
    bx: float
    by: float


@dataclass
class Sprite:
    """One object ready to composite: its coverage of its patch and a painter for the patch."""

    class_id: int  # 0 for clutter
    depth: float   # image row of the base: larger is nearer the camera
    x0: int
    y0: int
    cov: np.ndarray
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


def make_frame(cam, bx, by, left, right, top, bottom, tilt=0.0):
    c, s = math.cos(tilt), math.sin(tilt)
    corners = np.array([[left, top], [right, top], [left, bottom], [right, bottom]])
    xs = bx + c * corners[:, 0] - s * corners[:, 1]
    ys = by + s * corners[:, 0] + c * corners[:, 1]
    x0, x1 = max(int(math.floor(xs.min())) - 1, 0), min(int(math.ceil(xs.max())) + 2, cam.width)
    y0, y1 = max(int(math.floor(ys.min())) - 1, 0), min(int(math.ceil(ys.max())) + 2, cam.height)
    if x1 <= x0 or y1 <= y0:
        return None
    n = SUPERSAMPLE
    sub_x = x0 + (np.arange((x1 - x0) * n, dtype=np.float32) + 0.5) / n - 0.5
    sub_y = y0 + (np.arange((y1 - y0) * n, dtype=np.float32) + 0.5) / n - 0.5
    X, Y = np.meshgrid(sub_x, sub_y)
    dx, dy = X - bx, Y - by
    return Frame(x0, y0, x1 - x0, y1 - y0, X, Y, c * dx + s * dy, -s * dx + c * dy, bx, by)


def box_mean(a, n=SUPERSAMPLE):
    h, w = a.shape[0] // n, a.shape[1] // n
    return a.reshape((h, n, w, n) + a.shape[2:]).mean(axis=(1, 3))


def make_sprite(class_id, depth, frame, inside, colour, shadow=None, flat=False):
    """Antialias: average coverage and coverage-weighted colour over the sub-pixels."""
    if frame is None:
        return None
    weight = inside.astype(np.float32)
    cov = box_mean(weight)
    if cov.max() <= 0:
        return None

    def paint(canvas):
        rgb = box_mean(colour(canvas) * weight[..., None])
        return rgb / np.maximum(cov, 1e-6)[..., None]
    return Sprite(class_id, depth, frame.x0, frame.y0, cov, paint, shadow, flat)


@dataclass
class Surface:
    """Front-surface coordinates of a body of revolution seen slightly from above."""

    v: np.ndarray      # height on the body, 0 at the base, 1 at the top
    phi: np.ndarray    # azimuth of the surface normal, 0 towards the camera
    side: np.ndarray   # on the body's side
    top: np.ndarray    # on its top face (an ellipse)
    ex: np.ndarray     # top-ellipse coordinates, the rim at ex^2 + ey^2 = 1
    ey: np.ndarray
    height: float      # pixels
    radius: float      # pixels


def revolve(frame, height, radius, profile, ratio):
    """Where each point of the patch lies on a body with radius profile r(v).

    A circle of radius r at height v projects to an ellipse of half-axes r and ratio * r; the
    front half of it is the visible side. A point at local x on the front curve of height v has
    y = -v * height + ratio * sqrt(r(v)^2 - x^2); a few fixed-point steps solve it for v.
    """
    pv, pr = profile
    lx, ly = frame.lx, frame.ly
    r = np.full(lx.shape, pr.max() * radius, np.float32)
    for _ in range(3):
        v = (-ly + ratio * np.sqrt(np.maximum(r * r - lx * lx, 0))) / height
        r = np.interp(v, pv, pr).astype(np.float32) * radius
    side = (v >= 0) & (v <= 1) & (np.abs(lx) <= r)
    phi = np.arcsin(np.clip(lx / np.maximum(r, 1e-6), -1, 1))
    top_r = pr[-1] * radius
    ex, ey = lx / top_r, (ly + height) / (ratio * top_r)
    top = (ex * ex + ey * ey <= 1) & ~side
    return Surface(v, phi, side, top, ex, ey, height, radius)


def build_revolve(cam, bx, by, tilt, height_cm, radius_cm, profile, class_id, colour,
                  extra_width=0.0, extra=None):
    """A standing body of revolution: its frame, surface and sprite. `extra(frame, surf)` may
    add parts (a mug's handle) to the silhouette."""
    s, ratio = cam.scale(by), cam.ellipse_ratio(by)
    height, radius = s * height_cm * math.sqrt(1 - ratio ** 2), s * radius_cm
    r_max = radius * profile[1].max()
    half = r_max + extra_width * radius
    frame = make_frame(cam, bx, by, -half, half, -height - ratio * r_max, ratio * r_max, tilt)
    if frame is None:
        return None
    surf = revolve(frame, height, radius, profile, ratio)
    inside = surf.side | surf.top
    if extra is not None:
        inside = inside | extra(frame, surf)
    shadow = (bx, by, radius, ratio, height)
    return make_sprite(class_id, by, frame, inside, lambda canvas: colour(frame, surf, canvas),
                       shadow)


def profile_from(points, n=160):
    """A radius profile sampled densely from (v, r) control points (smooth between them)."""
    pv, pr = np.array(points, np.float32).T
    v = np.linspace(0, 1, n, dtype=np.float32)
    r = np.interp(v, pv, pr)
    kernel = np.ones(5, np.float32) / 5
    r = np.convolve(np.pad(r, 2, mode="edge"), kernel, "valid")
    return v, r.astype(np.float32)


def cylinder_label(surf, phase, radius_cm, height_cm):
    """Label coordinates in centimetres: around the cylinder and up from its base."""
    circumference = 2 * np.pi * radius_cm
    x = ((surf.phi + phase) * radius_cm) % circumference
    return x, surf.v * height_cm, circumference


def top_light(light, ex):
    """Brightness of an upward face, a little brighter on the side the light comes from."""
    return (light.ambient + (1 - light.ambient) * (0.35 + 0.45 * math.sin(light.elevation))
            + 0.12 * ex * math.sin(light.azimuth))


def see_through(frame, canvas, bx, lens):
    """What a water-filled cylinder shows of the scene behind it: mirrored and squeezed."""
    h, w = canvas.shape[:2]
    src_x = np.clip(np.rint(bx - (frame.X - bx) * lens), 0, w - 1).astype(np.int32)
    src_y = np.clip(np.rint(frame.Y), 0, h - 1).astype(np.int32)
    return canvas[src_y, src_x]


# ----------------------------------------------------------------------------- drinks

SILVER = np.array([0.78, 0.79, 0.82], np.float32)


def can_lid(surf, light, tab_angle):
    """The top of a can: bright rim, a groove, the recessed lid and the ring-pull."""
    ex, ey = surf.ex, surf.ey
    rho = np.hypot(ex, ey)
    shade = top_light(light, ex)
    grey = np.where(rho > 0.88, 0.95, np.where(rho > 0.78, 0.45, 0.68))
    tx = ex * math.cos(tab_angle) + ey * math.sin(tab_angle)
    ty = -ex * math.sin(tab_angle) + ey * math.cos(tab_angle)
    tab = (np.abs(tx) < 0.17) & (ty > -0.5) & (ty < 0.12)
    hole = ((tx / 0.12) ** 2 + ((ty + 0.3) / 0.1) ** 2) < 1
    mouth = ((tx / 0.22) ** 2 + ((ty - 0.4) / 0.17) ** 2) < 1
    grey = np.where(tab, 0.85, np.where(mouth, 0.5, grey))
    grey = np.where(hole, 0.3, grey)
    return (SILVER * (grey * shade)[..., None]).astype(np.float32)


def metal_can(rng, light, class_id, height_cm, radius_cm, profile, bare_below, bare_above,
              paints, style):
    """A printed aluminium can: label, bare metal at the ends, a specular stripe, the lid."""
    base = pick_paint(rng, paints)
    design = label_design(rng, base, paints + ["white"] * 3, 2 * np.pi * radius_cm, height_cm,
                          2 * np.pi * radius_cm, style)
    env, phase = metal_env(rng), rng.uniform(0, 2 * np.pi)
    gloss, tab_angle = rng.uniform(0.3, 0.8), rng.uniform(-0.6, 0.6)

    def colour(frame, surf, canvas):
        x, y, _ = cylinder_label(surf, phase, radius_cm, height_cm)
        lit = light.cylinder(surf.phi)[..., None]
        spec = light.highlight(surf.phi, 0.09)[..., None]
        reflect = env(surf.phi)[..., None]
        printed = design(x, y) * lit * (0.75 + 0.4 * reflect) + gloss * spec
        bare = SILVER * (0.3 + 0.8 * reflect) * (0.55 + 0.45 * lit) + 0.9 * spec
        ends = ((surf.v < bare_below) | (surf.v > bare_above))[..., None]
        body = np.where(ends, bare, printed)
        rgb = np.where(surf.top[..., None], can_lid(surf, light, tab_angle), body)
        return rgb * light.tint

    def build(cam, bx, by, tilt):
        return build_revolve(cam, bx, by, tilt, height_cm, radius_cm, profile, class_id, colour)
    return Spec(class_id, height_cm, radius_cm, build)


def soda_can(rng, light):
    height = rng.uniform(11.4, 12.4)
    radius = height / rng.uniform(1.75, 1.92) / 2
    neck = rng.uniform(0.8, 0.88)
    profile = profile_from([(0, 0.88), (0.03, 1), (0.87, 1), (0.95, neck), (0.985, neck),
                            (1, neck + 0.02)])
    return metal_can(rng, light, SODA_CAN, height, radius, profile, 0.03, 0.88, SODA_PAINTS,
                     "soda")


def juice_can(rng, light):
    """The book's juice can, drawn as a slim tall can (aspect 2.4-2.9) or a carton."""
    if rng.random() < 0.45:
        return juice_carton(rng, light)
    height = rng.uniform(12.5, 15.5)
    radius = height / rng.uniform(2.4, 2.9) / 2
    profile = profile_from([(0, 0.9), (0.025, 1), (0.9, 1), (0.96, 0.88), (0.99, 0.88),
                            (1, 0.9)])
    return metal_can(rng, light, JUICE_CAN, height, radius, profile, 0.025, 0.91, JUICE_PAINTS,
                     "juice")


def juice_carton(rng, light):
    width, depth = rng.uniform(5.8, 7.5), rng.uniform(4.0, 6.5)
    height = width * rng.uniform(1.9, 2.8)
    base = pick_paint(rng, JUICE_PAINTS)
    front = label_design(rng, base, JUICE_PAINTS + ["white"] * 2, width, height, None, "juice")
    side = label_design(rng, base, ["white"], depth, height, None, "plain")
    cap = pick_paint(rng, CAP_PAINTS + ["orange", "yellow"]) if rng.random() < 0.6 else None
    seal = rng.random() < 0.7

    def top(x, y):
        rgb = np.broadcast_to(base * 0.92, x.shape + (3,)).copy()
        if seal:
            rgb[np.abs(y - 0.5 * depth) < 0.18] *= 1.25
        if cap is not None:
            rgb[(x - 0.3 * width) ** 2 + (y - 0.5 * depth) ** 2 < (0.18 * width) ** 2] = cap
        return rgb
    faces = {"front": front, "back": front, "left": side, "right": side, "top": top}
    return box_spec(rng, light, JUICE_CAN, width, height, depth, faces, gloss=0.25)


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

    def build(cam, bx, by, tilt):
        s, ratio = cam.scale(by), cam.ellipse_ratio(by)
        project = box_projection(s, ratio, yaw, lift)
        corners = np.array([project(np.array([sx, sy, sz]) * half)
                            for sx in (-1, 1) for sy in (0, 2) for sz in (-1, 1)])
        frame = make_frame(cam, bx, by, corners[:, 0].min(), corners[:, 0].max(),
                           corners[:, 1].min(), corners[:, 1].max())
        if frame is None:
            return None
        parts = box_faces(frame, project, half, yaw)
        inside = np.logical_or.reduce([part[1] for part in parts])
        height_px = s * (height + lift) * math.sqrt(1 - ratio ** 2)
        shadow = None if lift else (bx, by, s * 0.5 * math.hypot(width, depth), ratio, height_px)
        colour = lambda canvas: box_colour(parts, faces, light, gloss, frame.lx.shape)
        return make_sprite(class_id, by + s * lift * 0.01, frame, inside, colour, shadow)
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
        px, py = frame.lx - o[0], frame.ly - o[1]
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
        spec = gloss * max(float(mirror @ to_light), 0.0) ** 8
        edge = np.minimum(np.minimum(fu[inside], 1 - fu[inside]) * size_u,
                          np.minimum(fv[inside], 1 - fv[inside]) * size_v)
        crease = 1 - 0.2 * np.clip(1 - edge / 0.25, 0, 1)
        rgb[inside] = printed * (shade * crease)[:, None] + spec
    return rgb * light.tint


def bottle_profile(rng, height):
    """Radius profile of a PET bottle: body, domed shoulder, neck with a ring, cap."""
    shoulder, neck = rng.uniform(0.58, 0.72), rng.uniform(0.3, 0.4)
    cap_v = 1 - rng.uniform(0.06, 0.09) * 22 / height
    neck_v = min(shoulder + rng.uniform(0.1, 0.17), cap_v - 0.06)
    ring_v = neck_v + 0.3 * (cap_v - neck_v)
    dome = [(shoulder + t * (neck_v - shoulder), neck + (1 - neck) * math.cos(0.5 * np.pi * t))
            for t in (0.25, 0.5, 0.75, 1.0)]
    profile = profile_from([(0, 0.9), (0.015, 0.98), (0.03, 1), (shoulder, 1)] + dome + [
        (ring_v - 0.004, neck), (ring_v, neck + 0.07), (ring_v + 0.015, neck + 0.07),
        (ring_v + 0.019, neck), (cap_v, neck), (cap_v + 0.003, neck + 0.06), (1, neck + 0.06)],
        n=240)
    return profile, shoulder, cap_v


def clear_plastic(behind, v, phi, light, tint, level, env, shoulder, height):
    """Water in a clear bottle: the refracted scene, tinted, darker and shinier towards the
    edges, with ribs, the water line and two highlight stripes."""
    edge = (np.abs(phi) / (np.pi / 2)) ** 3
    water = (v < level)[..., None]
    clear = behind * np.where(water, tint * tint, tint) * (0.85 - 0.35 * edge[..., None])
    clear = clear + (0.07 + 0.3 * edge * env(phi))[..., None]
    ribs = (v < 0.2) | ((v > shoulder - 0.12) & (v < shoulder))
    clear = clear * (1 + 0.1 * ribs * np.sin(2 * np.pi * v * height / 0.9))[..., None]
    clear = clear + 0.25 * (np.abs(v - level) < 0.004)[..., None]
    spec = light.highlight(phi, 0.07) + 0.35 * light.highlight(-phi - 0.4 * light.azimuth, 0.05)
    return clear + 0.8 * spec[..., None]


def water_bottle(rng, light):
    """A clear plastic bottle: ribbed body, shoulder, neck, coloured cap and a label band."""
    height = rng.uniform(19, 30)
    radius = height / rng.uniform(3.0, 4.2) / 2
    profile, shoulder, cap_v = bottle_profile(rng, height)
    label_lo = rng.uniform(0.25, 0.45)
    label_hi = min(label_lo + rng.uniform(0.12, 0.25), shoulder)
    base = pick_paint(rng, BOTTLE_LABEL_PAINTS)
    design = label_design(rng, base, BOTTLE_LABEL_PAINTS, 2 * np.pi * radius,
                          height, 2 * np.pi * radius, "label")
    cap = pick_paint(rng, CAP_PAINTS)
    tint = np.array([[0.95, 0.97, 1.0], [0.82, 0.92, 1.0], [0.84, 0.98, 0.9]][rng.integers(3)],
                    np.float32)
    level, lens, phase = rng.uniform(0.55, 0.9), rng.uniform(0.3, 0.9), rng.uniform(0, 2 * np.pi)
    env = metal_env(rng)
    no_label = rng.random() < 0.15

    def colour(frame, surf, canvas):
        v, phi = surf.v, surf.phi
        behind = see_through(frame, canvas, frame.bx, lens)
        clear = clear_plastic(behind, v, phi, light, tint, level, env, shoulder, height)
        spec = light.highlight(phi, 0.07)[..., None]
        x, y, _ = cylinder_label(surf, phase, radius, height)
        lit = light.cylinder(phi)[..., None]
        label = design(x, y) * lit + 0.3 * spec
        on_label = ((v >= label_lo) & (v <= label_hi) & (not no_label))[..., None]
        rgb = np.where(on_label, label, clear)
        ridges = 0.85 + 0.15 * np.sin(phi * 24) ** 2
        cap_side = cap * (lit * ridges[..., None]) + 0.4 * spec
        rgb = np.where((v > cap_v)[..., None], cap_side, rgb)
        cap_top = cap * (top_light(light, surf.ex) * 1.1)[..., None]
        rgb = np.where(surf.top[..., None], cap_top, rgb)
        return rgb * light.tint

    def build(cam, bx, by, tilt):
        return build_revolve(cam, bx, by, tilt, height, radius, profile, WATER_BOTTLE, colour)
    return Spec(WATER_BOTTLE, height, radius, build)


# ----------------------------------------------------------------------------- clutter

ALL_PAINTS = list(PAINTS)
COFFEE = np.array([0.18, 0.1, 0.05], np.float32)


def ceramic(light, phi, base, gloss):
    return (base * light.cylinder(phi)[..., None]
            + gloss * light.highlight(phi, 0.12)[..., None])


def mug(rng, light):
    """A mug: a drink-coloured cylinder about as wide as tall, with a handle."""
    height = rng.uniform(8.5, 10.5)
    radius = height / rng.uniform(1.0, 1.35) / 2
    profile = profile_from([(0, 0.93), (0.05, 1), (1, 1)])
    base = pick_paint(rng, ALL_PAINTS)
    print_ = label_design(rng, base, ALL_PAINTS, 2 * np.pi * radius, height, 2 * np.pi * radius,
                          "plain") if rng.random() < 0.5 else None
    side, phase, gloss = rng.choice([-1.0, 1.0]), rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.6)
    coffee = rng.random() < 0.5

    def handle(frame, surf):
        hx = (frame.lx - side * surf.radius) / surf.radius
        hy = (frame.ly + 0.5 * surf.height) / surf.height
        outer = (hx / 0.45) ** 2 + (hy / 0.34) ** 2 < 1
        inner = (hx / 0.25) ** 2 + (hy / 0.2) ** 2 < 1
        return outer & ~inner & (side * frame.lx > 0.8 * surf.radius)

    def colour(frame, surf, canvas):
        paint = base if print_ is None else print_(*cylinder_label(surf, phase, radius, height)[:2])
        rgb = ceramic(light, surf.phi, paint, gloss)
        rho = np.hypot(surf.ex, surf.ey)
        inner = base * (0.25 + 0.35 * (surf.ey + 1) / 2)[..., None]
        if coffee:
            inner = np.where((rho < 0.85)[..., None], COFFEE, inner)
        rim = base * top_light(light, surf.ex)[..., None]
        rgb = np.where(surf.top[..., None], np.where((rho > 0.9)[..., None], rim, inner), rgb)
        handle_light = light.cylinder(np.full(surf.phi.shape, side * 1.2, np.float32))
        rgb = np.where((~surf.side & ~surf.top)[..., None], base * handle_light[..., None], rgb)
        return rgb * light.tint

    def build(cam, bx, by, tilt):
        return build_revolve(cam, bx, by, tilt, height, radius, profile, 0, colour,
                             extra_width=0.5, extra=handle)
    return Spec(0, height, radius * 1.4, build)


def glass(rng, light):
    """A tumbler, empty or holding juice, cola, milk or water: see-through like the bottles."""
    height = rng.uniform(9, 15)
    radius = height / rng.uniform(1.2, 2.2) / 2
    taper = rng.uniform(0.75, 1.0)
    profile = profile_from([(0, taper), (1, 1)])
    fill = rng.uniform(0.3, 0.85) if rng.random() < 0.65 else 0.0
    drink = jitter_paint(rng, [(0.98, 0.55, 0.1), (0.25, 0.1, 0.04), (0.95, 0.95, 0.92),
                               (0.85, 0.1, 0.1), (0.9, 0.85, 0.3)][rng.integers(5)], 0.05)
    opacity, lens, env = rng.uniform(0.6, 0.95), rng.uniform(0.3, 0.9), metal_env(rng)

    def colour(frame, surf, canvas):
        behind = see_through(frame, canvas, frame.bx, lens)
        edge = (np.abs(surf.phi) / (np.pi / 2)) ** 3
        rgb = (behind * (0.88 - 0.35 * edge)[..., None]
               + (0.06 + 0.3 * edge * env(surf.phi))[..., None])
        liquid = drink * light.cylinder(surf.phi)[..., None]
        full = ((surf.v < fill) | (surf.v < 0.08))[..., None]
        rgb = np.where(full, opacity * liquid + (1 - opacity) * rgb, rgb)
        rho = np.hypot(surf.ex, surf.ey)
        rgb = np.where(surf.top[..., None], behind * 0.8 + 0.5 * (rho > 0.92)[..., None], rgb)
        rgb = rgb + 0.8 * light.highlight(surf.phi, 0.06)[..., None]
        return rgb * light.tint

    def build(cam, bx, by, tilt):
        return build_revolve(cam, bx, by, tilt, height, radius, profile, 0, colour)
    return Spec(0, height, radius, build)


def jar(rng, light):
    """A glass jar of jam, honey or pickles: can colours, but squat, with a wide lid and a
    paper label."""
    height = rng.uniform(7, 13)
    radius = height / rng.uniform(0.9, 1.35) / 2
    profile = profile_from([(0, 0.92), (0.03, 1), (0.78, 1), (0.84, 0.86), (0.86, 0.9), (1, 0.9)])
    contents = pick_paint(rng, ["red", "dark red", "purple", "orange", "gold", "green", "brown"])
    lid = pick_paint(rng, ["gold", "red", "white", "green", "silver", "black", "blue"])
    label = label_design(rng, pick_paint(rng, ["white", "cream", "brown", "yellow"]), ALL_PAINTS,
                         2 * np.pi * radius, height, 2 * np.pi * radius, "plain")
    lo, hi, phase = rng.uniform(0.2, 0.35), rng.uniform(0.55, 0.7), rng.uniform(0, 2 * np.pi)

    def colour(frame, surf, canvas):
        lit = light.cylinder(surf.phi)[..., None]
        spec = light.highlight(surf.phi, 0.07)[..., None]
        rgb = contents * lit * 0.8 + 0.7 * spec
        x, y, _ = cylinder_label(surf, phase, radius, height)
        on_label = ((surf.v > lo) & (surf.v < hi))[..., None]
        rgb = np.where(on_label, label(x, y) * lit + 0.15 * spec, rgb)
        ridges = 0.8 + 0.2 * np.sin(surf.phi * 30) ** 2
        rgb = np.where((surf.v > 0.86)[..., None], lid * lit * ridges[..., None] + 0.6 * spec, rgb)
        rgb = np.where(surf.top[..., None], lid * top_light(light, surf.ex)[..., None], rgb)
        return rgb * light.tint

    def build(cam, bx, by, tilt):
        return build_revolve(cam, bx, by, tilt, height, radius, profile, 0, colour)
    return Spec(0, height, radius, build)


def vase(rng, light):
    """A glazed vase with a random bulging profile: a round, capless silhouette."""
    height = rng.uniform(10, 25)
    radius = height / rng.uniform(1.3, 2.6) / 2
    belly, neck = rng.uniform(0.25, 0.6), rng.uniform(0.35, 0.7)
    profile = profile_from([(0, 0.6), (belly, 1), (0.85, neck), (1, neck + rng.uniform(0, 0.3))])
    base, gloss = pick_paint(rng, ALL_PAINTS), rng.uniform(0.3, 0.8)

    def colour(frame, surf, canvas):
        rgb = ceramic(light, surf.phi, base, gloss)
        rho = np.hypot(surf.ex, surf.ey)
        opening = np.where((rho > 0.85)[..., None], base * 0.9, base * 0.15)
        return np.where(surf.top[..., None], opening, rgb) * light.tint

    def build(cam, bx, by, tilt):
        return build_revolve(cam, bx, by, tilt, height, radius, profile, 0, colour)
    return Spec(0, height, radius * profile[1].max(), build)


def fruit(rng, light):
    """An orange, apple or lemon: a shaded ball in juice colours."""
    radius = rng.uniform(3.2, 4.5)
    base = pick_paint(rng, ["orange", "red", "yellow", "lime", "green", "dark red"])
    squash = rng.uniform(0.85, 1.1)
    gloss, dimples = rng.uniform(0.2, 0.7), periodic_noise(rng, 32, 1.0)

    def build(cam, bx, by, tilt):
        s = cam.scale(by)
        rx, ry = s * radius, s * radius * squash
        frame = make_frame(cam, bx, by, -rx, rx, -2 * ry, 0.0)
        if frame is None:
            return None
        nx, ny = frame.lx / rx, (frame.ly + ry) / ry
        inside = nx * nx + ny * ny <= 1

        def colour(canvas):
            nz = np.sqrt(np.clip(1 - nx * nx - ny * ny, 0, 1))
            normal = np.stack([nx, -ny, nz], -1)
            lambert = np.clip(normal @ light.vector(), 0, 1)
            half = light.vector() + np.array([0, 0, 1], np.float32)
            spec = np.clip(normal @ (half / np.linalg.norm(half)), 0, 1) ** 30
            bumps = 0.93 + 0.07 * sample_texture(dimples, nx * 2, ny * 2)
            rgb = base * (light.ambient + (1 - light.ambient) * lambert * bumps)[..., None]
            return (rgb + gloss * spec[..., None]) * light.tint
        shadow = (bx, by, 0.8 * rx, cam.ellipse_ratio(by), ry)
        return make_sprite(0, by, frame, inside, colour, shadow)
    return Spec(0, 2 * radius, radius, build, tilts=False)


def printed_box(rng, light):
    """A cereal, tea or tissue box, in the same colours as the drinks."""
    width, depth = rng.uniform(8, 22), rng.uniform(5, 10)
    height = rng.uniform(6, 28)
    base = pick_paint(rng, ALL_PAINTS)
    front = label_design(rng, base, ALL_PAINTS, width, height, None, "plain")
    side = label_design(rng, base, ALL_PAINTS, depth, height, None, "plain")
    top = label_design(rng, base, ALL_PAINTS, width, depth, None, "plain")
    faces = {"front": front, "back": front, "left": side, "right": side, "top": top}
    return box_spec(rng, light, 0, width, height, depth, faces, gloss=0.15)


def book_stack(rng, light):
    """One to three books lying flat, each a box with page edges and a printed cover."""
    specs, lift = [], 0.0
    yaw = rng.uniform(-0.6, 0.6)
    for _ in range(rng.integers(1, 4)):
        width, depth, thick = rng.uniform(13, 22), rng.uniform(17, 26), rng.uniform(1.2, 4.0)
        cover = pick_paint(rng, ALL_PAINTS)
        pages = lambda x, y: np.where(((y / 0.12) % 1.0 < 0.5)[..., None],
                                      np.float32(0.9), np.float32(0.8)) * np.array(
                                          [1.0, 0.97, 0.88], np.float32)
        faces = {"front": pages, "back": pages, "right": pages, "top": label_design(
            rng, cover, ALL_PAINTS, width, depth, None, "plain"),
            "left": label_design(rng, cover, ALL_PAINTS, depth, thick, None, "plain")}
        specs.append(box_spec(rng, light, 0, width, thick, depth, faces, 0.1, lift,
                              yaw + rng.uniform(-0.15, 0.15)))
        lift += thick

    def build(cam, bx, by, tilt):
        return [spec.build(cam, bx, by, 0.0) for spec in specs]
    return Spec(0, lift, specs[0].radius, build, tilts=False)


def plate(rng, light):
    """A plate lying on the table."""
    radius = rng.uniform(9, 14)
    base = pick_paint(rng, ["white"] * 4 + ["cream", "blue", "red", "green", "yellow", "black"])
    band = pick_paint(rng, ALL_PAINTS) if rng.random() < 0.4 else None

    def build(cam, bx, by, tilt):
        s, ratio = cam.scale(by), cam.ellipse_ratio(by)
        rx = s * radius
        frame = make_frame(cam, bx, by, -rx, rx, -ratio * rx, ratio * rx)
        if frame is None:
            return None
        ex, ey = frame.lx / rx, frame.ly / (ratio * rx)
        rho = np.hypot(ex, ey)

        def colour(canvas):
            shade = top_light(light, ex) + 0.12 * np.where(rho > 0.72, -ey, ey) * (rho > 0.6)
            rgb = base * shade[..., None]
            if band is not None:
                rgb = np.where((np.abs(rho - 0.86) < 0.04)[..., None], band * shade[..., None], rgb)
            return rgb * light.tint
        return make_sprite(0, by, frame, rho <= 1, colour, flat=True)
    return Spec(0, 1.5, radius, build, flat=True, tilts=False)


def napkin(rng, light):
    """A cloth or paper napkin: a flat blob in a drink colour."""
    radius = rng.uniform(6, 14)
    base = pick_paint(rng, ALL_PAINTS)
    harmonics = [(k, rng.uniform(0, 0.12), rng.uniform(0, 6.3)) for k in range(2, 6)]
    folds = periodic_noise(rng, 32)

    def build(cam, bx, by, tilt):
        s, ratio = cam.scale(by), cam.ellipse_ratio(by)
        rx = s * radius * 1.4
        frame = make_frame(cam, bx, by, -rx, rx, -ratio * rx, ratio * rx)
        if frame is None:
            return None
        ex, ey = frame.lx / (s * radius), frame.ly / (ratio * s * radius)
        angle = np.arctan2(ey, ex)
        edge = 1 + sum(a * np.cos(k * angle + p) for k, a, p in harmonics)
        inside = np.hypot(ex, ey) <= edge

        def colour(canvas):
            shade = top_light(light, ex) * (0.85 + 0.2 * sample_texture(folds, ex / 2, ey / 2))
            return base * shade[..., None] * light.tint
        return make_sprite(0, by, frame, inside, colour, flat=True)
    return Spec(0, 0.5, radius * 1.2, build, flat=True, tilts=False)


# ----------------------------------------------------------------------------- scene

DRINKS = [water_bottle, soda_can, juice_can]
STANDING_CLUTTER = [mug, mug, glass, glass, jar, vase, fruit, fruit, printed_box, book_stack]
FLAT_CLUTTER = [plate, napkin]


def choose_objects(rng, light):
    n_drinks = rng.choice(7, p=[0.05, 0.17, 0.22, 0.22, 0.16, 0.1, 0.08])
    n_clutter = rng.choice(5, p=[0.1, 0.25, 0.3, 0.2, 0.15])
    n_flat = rng.choice(3, p=[0.5, 0.35, 0.15])
    specs = [DRINKS[rng.integers(3)](rng, light) for _ in range(n_drinks)]
    specs += [STANDING_CLUTTER[rng.integers(len(STANDING_CLUTTER))](rng, light)
              for _ in range(n_clutter)]
    specs += [FLAT_CLUTTER[rng.integers(2)](rng, light) for _ in range(n_flat)]
    order = rng.permutation(len(specs))
    return [specs[i] for i in order]


def fits(cam, spec, bx, by, tilt):
    """Whether a drink stands wholly inside the image (clutter may be cut by the border)."""
    s, ratio = cam.scale(by), cam.ellipse_ratio(by)
    height = s * spec.height * math.sqrt(1 - ratio ** 2)
    half = s * spec.radius * 1.05 + abs(math.sin(tilt)) * height + 1
    bottom = by + ratio * s * spec.radius + 1
    top = by - height - ratio * s * spec.radius - abs(math.sin(tilt)) * s * spec.radius - 1
    return (bx - half >= 1 and bx + half <= cam.width - 2 and top >= 1
            and bottom <= cam.height - 2 and height >= MIN_DRINK_HEIGHT * cam.height)


def place_objects(rng, cam, specs):
    """Stand the objects on the table where they fit, without two in the same spot."""
    placed, footprints = [], []
    for spec in specs:
        for _ in range(30):
            near = 1 - (1 - rng.random()) ** 1.6  # favour the front of the table a little
            by = cam.y_edge + 0.02 * cam.height + near * (0.97 * cam.height - cam.y_edge)
            bx = rng.uniform(-0.05, 1.05) * cam.width
            tilt = float(np.clip(rng.normal(0, 0.035), -0.09, 0.09)) if spec.tilts else 0.0
            if spec.class_id and not fits(cam, spec, bx, by, tilt):
                continue
            if not spec.class_id and cam.scale(by) * spec.height > 1.3 * cam.height:
                continue
            tx, tz = cam.table_point(bx, by)
            if not spec.flat and any(math.hypot(tx - x, tz - z) < 1.05 * (spec.radius + r)
                                     for x, z, r in footprints):
                continue
            if not spec.flat:
                footprints.append((tx, tz, spec.radius))
            placed.append((spec, bx, by, tilt))
            break
    return placed


def build_sprites(cam, light, placed):
    sprites = []
    for spec, bx, by, tilt in placed:
        built = spec.build(cam, bx, by, tilt)
        for sprite in built if isinstance(built, list) else [built]:
            if sprite is not None:
                sprites.append(sprite)
    return sprites


def cast_shadows(canvas, cam, light, sprites):
    """Soft shadows on the table: a dark contact patch and a blurred cast shadow."""
    n = 2
    size = (cam.width // n + 1, cam.height // n + 1)
    cast, contact = Image.new("L", size, 0), Image.new("L", size, 0)
    draw_cast, draw_contact = ImageDraw.Draw(cast), ImageDraw.Draw(contact)
    length = 1 / math.tan(light.elevation)
    for sp in sprites:
        if sp.shadow is None:
            continue
        x, y, r, ratio, height = sp.shadow
        x, y, r, height = x / n, y / n, r / n, height / n
        off_x = -math.sin(light.azimuth) * height * length
        off_y = light.towards_camera * height * length * ratio
        for step in range(8, -1, -1):
            t = step / 8
            rx, ry = r * (1 - 0.3 * t), ratio * r * (1 - 0.3 * t) + 0.3
            cx, cy = x + t * off_x, y + t * off_y
            draw_cast.ellipse([cx - rx, cy - ry, cx + rx, cy + ry], fill=int(255 * (1 - 0.6 * t)))
        draw_contact.ellipse([x - 1.05 * r, y - ratio * r - 0.5, x + 1.05 * r, y + ratio * r + 0.5],
                             fill=255)
    radii = [sp.shadow[2] / n for sp in sprites if sp.shadow is not None] or [1.0]
    blur = float(np.mean(radii)) + 1
    full = (cam.width, cam.height)
    cast = cast.filter(ImageFilter.GaussianBlur(0.3 * blur)).resize(full, Image.BILINEAR)
    contact = contact.filter(ImageFilter.GaussianBlur(0.1 * blur)).resize(full, Image.BILINEAR)
    shade = (0.65 * np.asarray(cast, np.float32) + 0.35 * np.asarray(contact, np.float32)) / 255
    rows = np.arange(cam.height, dtype=np.float32)[:, None]
    shade *= np.clip(rows - cam.y_edge + 0.5, 0, 1) * (1 - light.ambient) * 1.3
    canvas *= np.clip(1 - shade, 0.15, 1)[..., None]


def resolve_occlusion(cam, sprites):
    """Front to back: how much of each sprite is visible; drinks hidden too much are left out.

    Leaving out a hidden drink only uncovers what is behind it, so one pass is enough.
    """
    front = np.zeros((cam.height, cam.width), np.float32)
    kept, visible = [], []
    min_area = 20 * cam.width * cam.height / (320 * 240)
    for sp in sorted(sprites, key=lambda s: s.depth, reverse=True):
        h, w = sp.cov.shape
        patch = (slice(sp.y0, sp.y0 + h), slice(sp.x0, sp.x0 + w))
        vis = sp.cov * (1 - front[patch])
        seen = vis.sum()
        if sp.class_id and (seen < MIN_VISIBLE_FRACTION * sp.cov.sum() or seen < min_area):
            continue
        front[patch] = 1 - (1 - front[patch]) * (1 - sp.cov)
        kept.append(sp)
        visible.append(vis)
    return kept[::-1], visible[::-1]


def composite(canvas, sprite):
    h, w = sprite.cov.shape
    patch = canvas[sprite.y0:sprite.y0 + h, sprite.x0:sprite.x0 + w]
    cov = sprite.cov[..., None]
    patch[:] = patch * (1 - cov) + sprite.paint(canvas) * cov


def visible_polygons(sprite, vis, cam):
    """Outlines of the visible parts of a drink: the 0.5 contours of its visible coverage."""
    polygons = []
    for contour in find_contours(np.pad(vis, 1), 0.5):
        contour = approximate_polygon(contour, POLYGON_TOLERANCE)[:-1]
        if len(contour) < 3:
            continue
        rows, cols = contour[:, 0], contour[:, 1]
        area = 0.5 * (np.dot(rows, np.roll(cols, 1)) - np.dot(cols, np.roll(rows, 1)))
        if area < 2.0:  # holes wind the other way; specks are not worth a region
            continue
        xs = np.clip(cols + sprite.x0 - 1, 0, cam.width - 1)
        ys = np.clip(rows + sprite.y0 - 1, 0, cam.height - 1)
        polygons.append((np.round(xs, 1).tolist(), np.round(ys, 1).tolist()))
    return polygons


def camera_effects(rng, canvas, cam, light):
    """Uneven light, exposure, white balance, lens blur and sensor noise, then 8 bits."""
    ys, xs = np.mgrid[0:cam.height, 0:cam.width].astype(np.float32)
    u, v = xs / cam.width - 0.5, ys / cam.height - 0.5
    falloff = 1 + 0.35 * math.sin(light.azimuth) * u + rng.uniform(-0.15, 0.15) * v
    vignette = 1 - rng.uniform(0.1, 0.45) * (u * u + v * v)
    gain = rng.uniform(0.75, 1.25) * rng.normal(1, 0.04, 3).astype(np.float32)
    img = np.clip(canvas * (falloff * vignette)[..., None] * gain, 0, 1) ** rng.uniform(0.85, 1.15)
    img = blur_float(img, rng.uniform(0.2, 0.9) * cam.width / 640 + 0.15)
    sigma = rng.uniform(0.003, 0.016)
    noise = rng.standard_normal(img.shape).astype(np.float32)
    img = img + noise * (sigma + 0.5 * sigma * np.sqrt(img))
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def render_scene(rng, width, height):
    """One image (uint8 RGB) and its drink regions [(class_id, (xs, ys)), ...], back to front."""
    cam, light = sample_camera(rng, width, height), sample_light(rng)
    canvas = draw_background(rng, cam)
    placed = place_objects(rng, cam, choose_objects(rng, light))
    sprites = build_sprites(cam, light, placed)
    flat = [sp for sp in sprites if sp.flat]
    for sprite in sorted(flat, key=lambda s: s.depth):
        composite(canvas, sprite)
    standing, visible = resolve_occlusion(cam, [sp for sp in sprites if not sp.flat])
    cast_shadows(canvas, cam, light, standing)
    regions = []
    for sprite, vis in zip(standing, visible):
        composite(canvas, sprite)
        if sprite.class_id:
            regions += [(sprite.class_id, poly) for poly in visible_polygons(sprite, vis, cam)]
    return camera_effects(rng, canvas, cam, light), regions


# ----------------------------------------------------------------------------- dataset

def encode_jpeg(rng, pixels, quality):
    """JPEG bytes; half the images went through a phone's stronger compression first."""
    image = Image.fromarray(pixels)
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(60, 90)))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def via_entry(filename, size, regions):
    """One image in VIA 2.x export format (regions as polygons, class in region_attributes)."""
    return {
        "filename": filename,
        "size": size,
        "regions": [{"shape_attributes": {"name": "polygon", "all_points_x": xs,
                                          "all_points_y": ys},
                     "region_attributes": {"name": str(class_id)}}
                    for class_id, (xs, ys) in regions],
        "file_attributes": {},
    }


def write_json(path, data, indent=None):
    tmp = path.with_name(path.name + ".tmp")
    separators = (",", ":") if indent is None else None  # compact, as VIA writes it
    tmp.write_text(json.dumps(data, indent=indent, separators=separators) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)


def generate_dataset(out, n_train=160, n_test=40, width=320, height=240, seed=0, quality=90,
                     progress=False):
    """Write the images, the two VIA files and classes.json; returns {split: via_dict}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = {"train": {}, "test": {}}
    indices = range(n_train + n_test)
    if progress:
        from tqdm import tqdm
        indices = tqdm(indices, desc="drawing", unit="image")
    for index in indices:
        rng = np.random.default_rng([seed, index])
        pixels, regions = render_scene(rng, width, height)
        data = encode_jpeg(rng, pixels, quality)
        filename = f"{index + 1:07d}.jpg"
        (out / filename).write_bytes(data)
        split = "train" if index < n_train else "test"
        splits[split][filename + str(len(data))] = via_entry(filename, len(data), regions)
    for split, via in splits.items():
        write_json(out / f"segmentation_{split}.json", via)
    classes = {"names": CLASS_NAMES, "colors": [list(c) for c in CLASS_COLORS],
               "ignore_index": IGNORE_INDEX}
    write_json(out / "classes.json", classes, indent=2)
    return splits


def get_args_parser():
    parser = argparse.ArgumentParser(
        description="Draw a synthetic 'drinks' dataset (water bottle, soda can, juice can) in "
                    "the layout of Advanced Deep Learning with Keras, ch. 12.")
    parser.add_argument("--out", default="data/drinks", help="output folder")
    parser.add_argument("--train", type=int, default=160, help="number of training images")
    parser.add_argument("--test", type=int, default=40, help="number of test images")
    parser.add_argument("--width", type=int, default=320, help="image width (the book: 640)")
    parser.add_argument("--height", type=int, default=240, help="image height (the book: 480)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.train < 0 or args.test < 0:
        sys.exit("error: --train and --test must not be negative")
    if args.width < 32 or args.height < 32:
        sys.exit("error: --width and --height must be at least 32")
    if not 1 <= args.quality <= 100:
        sys.exit("error: --quality must be between 1 and 100")
    splits = generate_dataset(args.out, args.train, args.test, args.width, args.height,
                              args.seed, args.quality, progress=True)
    n_regions = sum(len(e["regions"]) for via in splits.values() for e in via.values())
    print(f"wrote {args.train + args.test} images with {n_regions} regions to {args.out}")


if __name__ == "__main__":
    main()
