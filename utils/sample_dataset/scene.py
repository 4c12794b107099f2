"""A scene: choose the objects, stand them on the table where they fit, paint them back to front
with their shadows, and trace the visible part of each drink as polygons.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageDraw, ImageFilter
from skimage.measure import approximate_polygon, find_contours

from .background import draw_background
from .camera import camera_effects, sample_camera, sample_light
from .clutter import book_stack, fruit, glass, jar, mug, napkin, plate, printed_box, vase
from .drinks import juice_can, soda_can, water_bottle

POLYGON_TOLERANCE = 0.25  # pixels; the simplified outline stays this close to the traced one
MIN_VISIBLE_FRACTION = 0.3
MIN_DRINK_HEIGHT = 0.14  # of the image height, so every drink is big enough to recognise
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


def fits(cam, spec, base_x, base_y, tilt):
    """Whether a drink stands wholly inside the image (clutter may be cut by the border)."""
    s, ratio = cam.scale(base_y), cam.ellipse_ratio(base_y)
    height = s * spec.height * math.sqrt(1 - ratio ** 2)
    half = s * spec.radius * 1.05 + abs(math.sin(tilt)) * height + 1
    bottom = base_y + ratio * s * spec.radius + 1
    top = base_y - height - ratio * s * spec.radius - abs(math.sin(tilt)) * s * spec.radius - 1
    return (base_x - half >= 1 and base_x + half <= cam.width - 2 and top >= 1
            and bottom <= cam.height - 2 and height >= MIN_DRINK_HEIGHT * cam.height)


def place_objects(rng, cam, specs):
    """Stand the objects on the table where they fit, without two in the same spot."""
    placed, footprints = [], []
    for spec in specs:
        for _ in range(30):
            near = 1 - (1 - rng.random()) ** 1.6  # favour the front of the table a little
            base_y = cam.y_edge + 0.02 * cam.height + near * (0.97 * cam.height - cam.y_edge)
            base_x = rng.uniform(-0.05, 1.05) * cam.width
            tilt = float(np.clip(rng.normal(0, 0.035), -0.09, 0.09)) if spec.tilts else 0.0
            if spec.class_id and not fits(cam, spec, base_x, base_y, tilt):
                continue
            if not spec.class_id and cam.scale(base_y) * spec.height > 1.3 * cam.height:
                continue
            tx, tz = cam.table_point(base_x, base_y)
            if not spec.flat and any(math.hypot(tx - x, tz - z) < 1.05 * (spec.radius + r)
                                     for x, z, r in footprints):
                continue
            if not spec.flat:
                footprints.append((tx, tz, spec.radius))
            placed.append((spec, base_x, base_y, tilt))
            break
    return placed


def build_sprites(cam, light, placed):
    sprites = []
    for spec, base_x, base_y, tilt in placed:
        built = spec.build(cam, base_x, base_y, tilt)
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
    for sprite in sprites:
        if sprite.shadow is None:
            continue
        x, y, r, ratio, height = sprite.shadow
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
    radii = [sprite.shadow[2] / n for sprite in sprites if sprite.shadow is not None] or [1.0]
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
    for sprite in sorted(sprites, key=lambda s: s.depth, reverse=True):
        h, w = sprite.coverage.shape
        patch = (slice(sprite.y0, sprite.y0 + h), slice(sprite.x0, sprite.x0 + w))
        visible_coverage = sprite.coverage * (1 - front[patch])
        seen = visible_coverage.sum()
        hidden = seen < MIN_VISIBLE_FRACTION * sprite.coverage.sum() or seen < min_area
        if sprite.class_id and hidden:
            continue
        front[patch] = 1 - (1 - front[patch]) * (1 - sprite.coverage)
        kept.append(sprite)
        visible.append(visible_coverage)
    return kept[::-1], visible[::-1]


def composite(canvas, sprite):
    h, w = sprite.coverage.shape
    patch = canvas[sprite.y0:sprite.y0 + h, sprite.x0:sprite.x0 + w]
    coverage = sprite.coverage[..., None]
    patch[:] = patch * (1 - coverage) + sprite.paint(canvas) * coverage


def visible_polygons(sprite, visible_coverage, cam):
    """Outlines of the visible parts of a drink: the 0.5 contours of its visible coverage."""
    polygons = []
    for contour in find_contours(np.pad(visible_coverage, 1), 0.5):
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


def render_scene(rng, width, height):
    """One image (uint8 RGB) and its drink regions [(class_id, (xs, ys)), ...], back to front."""
    cam, light = sample_camera(rng, width, height), sample_light(rng)
    canvas = draw_background(rng, cam)
    placed = place_objects(rng, cam, choose_objects(rng, light))
    sprites = build_sprites(cam, light, placed)
    flat = [sprite for sprite in sprites if sprite.flat]
    for sprite in sorted(flat, key=lambda s: s.depth):
        composite(canvas, sprite)
    standing, visible = resolve_occlusion(cam, [sprite for sprite in sprites if not sprite.flat])
    cast_shadows(canvas, cam, light, standing)
    regions = []
    for sprite, visible_coverage in zip(standing, visible):
        composite(canvas, sprite)
        if sprite.class_id:
            polygons = visible_polygons(sprite, visible_coverage, cam)
            regions += [(sprite.class_id, polygon) for polygon in polygons]
    return camera_effects(rng, canvas, cam, light), regions
