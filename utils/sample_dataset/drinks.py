"""The three drink classes, which differ by shape while their colours overlap on purpose: a clear
water bottle with a neck and cap, a squat soda can, and a slim juice can or a carton.
"""

from __future__ import annotations

import math

import numpy as np

from .paints import BOTTLE_LABEL_PAINTS, CAP_PAINTS, JUICE_PAINTS, SODA_PAINTS, pick_paint
from .shapes import (
    Spec,
    box_spec,
    build_revolve,
    cylinder_label,
    profile_from,
    see_through,
    top_light,
)
from .textures import label_design, metal_env

CLASS_NAMES = ["background", "water bottle", "soda can", "juice can"]
CLASS_COLORS = [(0, 0, 0), (0, 114, 189), (217, 83, 25), (237, 177, 32)]
WATER_BOTTLE, SODA_CAN, JUICE_CAN = 1, 2, 3
SILVER = np.array([0.78, 0.79, 0.82], np.float32)


def can_lid(surface, light, tab_angle):
    """The top of a can: bright rim, a groove, the recessed lid and the ring-pull."""
    ellipse_x, ellipse_y = surface.ellipse_x, surface.ellipse_y
    rho = np.hypot(ellipse_x, ellipse_y)
    shade = top_light(light, ellipse_x)
    grey = np.where(rho > 0.88, 0.95, np.where(rho > 0.78, 0.45, 0.68))
    tx = ellipse_x * math.cos(tab_angle) + ellipse_y * math.sin(tab_angle)
    ty = -ellipse_x * math.sin(tab_angle) + ellipse_y * math.cos(tab_angle)
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

    def colour(frame, surface, canvas):
        x, y, _ = cylinder_label(surface, phase, radius_cm, height_cm)
        lit = light.cylinder(surface.phi)[..., None]
        specular = light.highlight(surface.phi, 0.09)[..., None]
        reflect = env(surface.phi)[..., None]
        printed = design(x, y) * lit * (0.75 + 0.4 * reflect) + gloss * specular
        bare = SILVER * (0.3 + 0.8 * reflect) * (0.55 + 0.45 * lit) + 0.9 * specular
        ends = ((surface.v < bare_below) | (surface.v > bare_above))[..., None]
        body = np.where(ends, bare, printed)
        rgb = np.where(surface.top[..., None], can_lid(surface, light, tab_angle), body)
        return rgb * light.tint

    def build(cam, base_x, base_y, tilt):
        return build_revolve(cam, base_x, base_y, tilt, height_cm, radius_cm, profile, class_id,
                             colour)
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
    specular = light.highlight(phi, 0.07) + 0.35 * light.highlight(-phi - 0.4 * light.azimuth, 0.05)
    return clear + 0.8 * specular[..., None]


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

    def colour(frame, surface, canvas):
        v, phi = surface.v, surface.phi
        behind = see_through(frame, canvas, frame.base_x, lens)
        clear = clear_plastic(behind, v, phi, light, tint, level, env, shoulder, height)
        specular = light.highlight(phi, 0.07)[..., None]
        x, y, _ = cylinder_label(surface, phase, radius, height)
        lit = light.cylinder(phi)[..., None]
        label = design(x, y) * lit + 0.3 * specular
        on_label = ((v >= label_lo) & (v <= label_hi) & (not no_label))[..., None]
        rgb = np.where(on_label, label, clear)
        ridges = 0.85 + 0.15 * np.sin(phi * 24) ** 2
        cap_side = cap * (lit * ridges[..., None]) + 0.4 * specular
        rgb = np.where((v > cap_v)[..., None], cap_side, rgb)
        cap_top = cap * (top_light(light, surface.ellipse_x) * 1.1)[..., None]
        rgb = np.where(surface.top[..., None], cap_top, rgb)
        return rgb * light.tint

    def build(cam, base_x, base_y, tilt):
        return build_revolve(cam, base_x, base_y, tilt, height, radius, profile, WATER_BOTTLE,
                             colour)
    return Spec(WATER_BOTTLE, height, radius, build)
