"""The background: a wall (painted, striped, tiled or brick, perhaps with a picture or a window)
meeting a table top in perspective (wood, cloth, gingham, stone or plain).
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from .camera import blur_float
from .paints import PAINTS, WALL_PAINTS, WOODS, jitter_paint, pick_paint
from .textures import periodic_noise, sample_texture, smooth_sample, stripes


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
