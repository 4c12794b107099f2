"""Textures and printed designs: tileable noise, anti-aliased stripes, and the labels printed on
cans, bottles and boxes (marks in centimetre label coordinates that wrap around a cylinder).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from .paints import pick_paint


def periodic_noise(rng, n=128, power=2.2):
    """Tileable smooth noise in [0, 1] (white noise with a 1/f^power spectrum)."""
    spectrum = np.fft.fft2(rng.standard_normal((n, n)))
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n)))
    f[0, 0] = 1.0
    texture = np.real(np.fft.ifft2(spectrum / f ** (power / 2)))
    texture = (texture - texture.min()) / (np.ptp(texture) + 1e-9)
    return texture.astype(np.float32)


def sample_texture(texture, a, b):
    """Bilinear lookup of a tileable texture at coordinates (a, b) measured in tiles."""
    n = texture.shape[0]
    a = (np.asarray(a, np.float32) % 1.0) * n
    b = (np.asarray(b, np.float32) % 1.0) * n
    i0, j0 = a.astype(np.int32) % n, b.astype(np.int32) % n
    i1, j1 = (i0 + 1) % n, (j0 + 1) % n
    fa, fb = a - np.floor(a), b - np.floor(b)
    top = texture[j0, i0] * (1 - fa) + texture[j0, i1] * fa
    bottom = texture[j1, i0] * (1 - fa) + texture[j1, i1] * fa
    return top * (1 - fb) + bottom * fb


def smooth_sample(texture, a, b, step=4):
    """`sample_texture` for slowly varying coordinates: sampled every `step` pixels, then
    resized (a quarter of the work for the wall and table)."""
    h, w = a.shape
    coarse = sample_texture(texture, a[::step, ::step], b[::step, ::step]).astype(np.float32)
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
        leaf_x, leaf_y = x0 + 0.5 * radius, y0 + 1.1 * radius
        marks.append((lambda x, y: (wrap_dx(x, leaf_x, wraps) / (0.5 * radius)) ** 2
                      + ((y - leaf_y) / (0.25 * radius)) ** 2 < 1, leaf))
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
