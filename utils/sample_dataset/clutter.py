"""Clutter that is not a drink but looks like one in places: mugs, glasses, jars, vases, fruit,
printed boxes, books, plates and napkins, in the same paints as the drinks.
"""

from __future__ import annotations

import numpy as np

from .paints import ALL_PAINTS, jitter_paint, pick_paint
from .shapes import (
    Spec,
    box_spec,
    build_revolve,
    cylinder_label,
    make_frame,
    make_sprite,
    profile_from,
    see_through,
    top_light,
)
from .textures import label_design, metal_env, periodic_noise, sample_texture

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
    design = label_design(rng, base, ALL_PAINTS, 2 * np.pi * radius, height, 2 * np.pi * radius,
                          "plain") if rng.random() < 0.5 else None
    side, phase, gloss = rng.choice([-1.0, 1.0]), rng.uniform(0, 2 * np.pi), rng.uniform(0.2, 0.6)
    coffee = rng.random() < 0.5

    def handle(frame, surface):
        hx = (frame.local_x - side * surface.radius) / surface.radius
        hy = (frame.local_y + 0.5 * surface.height) / surface.height
        outer = (hx / 0.45) ** 2 + (hy / 0.34) ** 2 < 1
        inner = (hx / 0.25) ** 2 + (hy / 0.2) ** 2 < 1
        return outer & ~inner & (side * frame.local_x > 0.8 * surface.radius)

    def colour(frame, surface, canvas):
        if design is None:
            paint = base
        else:
            paint = design(*cylinder_label(surface, phase, radius, height)[:2])
        rgb = ceramic(light, surface.phi, paint, gloss)
        rho = np.hypot(surface.ellipse_x, surface.ellipse_y)
        inner = base * (0.25 + 0.35 * (surface.ellipse_y + 1) / 2)[..., None]
        if coffee:
            inner = np.where((rho < 0.85)[..., None], COFFEE, inner)
        rim = base * top_light(light, surface.ellipse_x)[..., None]
        rgb = np.where(surface.top[..., None], np.where((rho > 0.9)[..., None], rim, inner), rgb)
        handle_light = light.cylinder(np.full(surface.phi.shape, side * 1.2, np.float32))
        on_handle = (~surface.side & ~surface.top)[..., None]
        rgb = np.where(on_handle, base * handle_light[..., None], rgb)
        return rgb * light.tint

    def build(cam, base_x, base_y, tilt):
        return build_revolve(cam, base_x, base_y, tilt, height, radius, profile, 0, colour,
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

    def colour(frame, surface, canvas):
        behind = see_through(frame, canvas, frame.base_x, lens)
        edge = (np.abs(surface.phi) / (np.pi / 2)) ** 3
        rgb = (behind * (0.88 - 0.35 * edge)[..., None]
               + (0.06 + 0.3 * edge * env(surface.phi))[..., None])
        liquid = drink * light.cylinder(surface.phi)[..., None]
        full = ((surface.v < fill) | (surface.v < 0.08))[..., None]
        rgb = np.where(full, opacity * liquid + (1 - opacity) * rgb, rgb)
        rho = np.hypot(surface.ellipse_x, surface.ellipse_y)
        rgb = np.where(surface.top[..., None], behind * 0.8 + 0.5 * (rho > 0.92)[..., None], rgb)
        rgb = rgb + 0.8 * light.highlight(surface.phi, 0.06)[..., None]
        return rgb * light.tint

    def build(cam, base_x, base_y, tilt):
        return build_revolve(cam, base_x, base_y, tilt, height, radius, profile, 0, colour)
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

    def colour(frame, surface, canvas):
        lit = light.cylinder(surface.phi)[..., None]
        specular = light.highlight(surface.phi, 0.07)[..., None]
        rgb = contents * lit * 0.8 + 0.7 * specular
        x, y, _ = cylinder_label(surface, phase, radius, height)
        on_label = ((surface.v > lo) & (surface.v < hi))[..., None]
        rgb = np.where(on_label, label(x, y) * lit + 0.15 * specular, rgb)
        ridges = 0.8 + 0.2 * np.sin(surface.phi * 30) ** 2
        rgb = np.where((surface.v > 0.86)[..., None],
                       lid * lit * ridges[..., None] + 0.6 * specular, rgb)
        rgb = np.where(surface.top[..., None],
                       lid * top_light(light, surface.ellipse_x)[..., None], rgb)
        return rgb * light.tint

    def build(cam, base_x, base_y, tilt):
        return build_revolve(cam, base_x, base_y, tilt, height, radius, profile, 0, colour)
    return Spec(0, height, radius, build)


def vase(rng, light):
    """A glazed vase with a random bulging profile: a round, capless silhouette."""
    height = rng.uniform(10, 25)
    radius = height / rng.uniform(1.3, 2.6) / 2
    belly, neck = rng.uniform(0.25, 0.6), rng.uniform(0.35, 0.7)
    profile = profile_from([(0, 0.6), (belly, 1), (0.85, neck), (1, neck + rng.uniform(0, 0.3))])
    base, gloss = pick_paint(rng, ALL_PAINTS), rng.uniform(0.3, 0.8)

    def colour(frame, surface, canvas):
        rgb = ceramic(light, surface.phi, base, gloss)
        rho = np.hypot(surface.ellipse_x, surface.ellipse_y)
        opening = np.where((rho > 0.85)[..., None], base * 0.9, base * 0.15)
        return np.where(surface.top[..., None], opening, rgb) * light.tint

    def build(cam, base_x, base_y, tilt):
        return build_revolve(cam, base_x, base_y, tilt, height, radius, profile, 0, colour)
    return Spec(0, height, radius * profile[1].max(), build)


def fruit(rng, light):
    """An orange, apple or lemon: a shaded ball in juice colours."""
    radius = rng.uniform(3.2, 4.5)
    base = pick_paint(rng, ["orange", "red", "yellow", "lime", "green", "dark red"])
    squash = rng.uniform(0.85, 1.1)
    gloss, dimples = rng.uniform(0.2, 0.7), periodic_noise(rng, 32, 1.0)

    def build(cam, base_x, base_y, tilt):
        s = cam.scale(base_y)
        rx, ry = s * radius, s * radius * squash
        frame = make_frame(cam, base_x, base_y, -rx, rx, -2 * ry, 0.0)
        if frame is None:
            return None
        nx, ny = frame.local_x / rx, (frame.local_y + ry) / ry
        inside = nx * nx + ny * ny <= 1

        def colour(canvas):
            nz = np.sqrt(np.clip(1 - nx * nx - ny * ny, 0, 1))
            normal = np.stack([nx, -ny, nz], -1)
            lambert = np.clip(normal @ light.vector(), 0, 1)
            half = light.vector() + np.array([0, 0, 1], np.float32)
            specular = np.clip(normal @ (half / np.linalg.norm(half)), 0, 1) ** 30
            bumps = 0.93 + 0.07 * sample_texture(dimples, nx * 2, ny * 2)
            rgb = base * (light.ambient + (1 - light.ambient) * lambert * bumps)[..., None]
            return (rgb + gloss * specular[..., None]) * light.tint
        shadow = (base_x, base_y, 0.8 * rx, cam.ellipse_ratio(base_y), ry)
        return make_sprite(0, base_y, frame, inside, colour, shadow)
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
        def pages(x, y):
            return np.where(((y / 0.12) % 1.0 < 0.5)[..., None], np.float32(0.9),
                            np.float32(0.8)) * np.array([1.0, 0.97, 0.88], np.float32)

        faces = {"front": pages, "back": pages, "right": pages, "top": label_design(
            rng, cover, ALL_PAINTS, width, depth, None, "plain"),
            "left": label_design(rng, cover, ALL_PAINTS, depth, thick, None, "plain")}
        specs.append(box_spec(rng, light, 0, width, thick, depth, faces, 0.1, lift,
                              yaw + rng.uniform(-0.15, 0.15)))
        lift += thick

    def build(cam, base_x, base_y, tilt):
        return [spec.build(cam, base_x, base_y, 0.0) for spec in specs]
    return Spec(0, lift, specs[0].radius, build, tilts=False)


def plate(rng, light):
    """A plate lying on the table."""
    radius = rng.uniform(9, 14)
    base = pick_paint(rng, ["white"] * 4 + ["cream", "blue", "red", "green", "yellow", "black"])
    band = pick_paint(rng, ALL_PAINTS) if rng.random() < 0.4 else None

    def build(cam, base_x, base_y, tilt):
        s, ratio = cam.scale(base_y), cam.ellipse_ratio(base_y)
        rx = s * radius
        frame = make_frame(cam, base_x, base_y, -rx, rx, -ratio * rx, ratio * rx)
        if frame is None:
            return None
        ellipse_x, ellipse_y = frame.local_x / rx, frame.local_y / (ratio * rx)
        rho = np.hypot(ellipse_x, ellipse_y)

        def colour(canvas):
            shade = (top_light(light, ellipse_x)
                     + 0.12 * np.where(rho > 0.72, -ellipse_y, ellipse_y) * (rho > 0.6))
            rgb = base * shade[..., None]
            if band is not None:
                rgb = np.where((np.abs(rho - 0.86) < 0.04)[..., None], band * shade[..., None], rgb)
            return rgb * light.tint
        return make_sprite(0, base_y, frame, rho <= 1, colour, flat=True)
    return Spec(0, 1.5, radius, build, flat=True, tilts=False)


def napkin(rng, light):
    """A cloth or paper napkin: a flat blob in a drink colour."""
    radius = rng.uniform(6, 14)
    base = pick_paint(rng, ALL_PAINTS)
    harmonics = [(k, rng.uniform(0, 0.12), rng.uniform(0, 6.3)) for k in range(2, 6)]
    folds = periodic_noise(rng, 32)

    def build(cam, base_x, base_y, tilt):
        s, ratio = cam.scale(base_y), cam.ellipse_ratio(base_y)
        rx = s * radius * 1.4
        frame = make_frame(cam, base_x, base_y, -rx, rx, -ratio * rx, ratio * rx)
        if frame is None:
            return None
        ellipse_x, ellipse_y = frame.local_x / (s * radius), frame.local_y / (ratio * s * radius)
        angle = np.arctan2(ellipse_y, ellipse_x)
        edge = 1 + sum(a * np.cos(k * angle + p) for k, a, p in harmonics)
        inside = np.hypot(ellipse_x, ellipse_y) <= edge

        def colour(canvas):
            folded = sample_texture(folds, ellipse_x / 2, ellipse_y / 2)
            shade = top_light(light, ellipse_x) * (0.85 + 0.2 * folded)
            return base * shade[..., None] * light.tint
        return make_sprite(0, base_y, frame, inside, colour, flat=True)
    return Spec(0, 0.5, radius * 1.2, build, flat=True, tilts=False)
