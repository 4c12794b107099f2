"""Paints: named colours and how an object picks one, with random variation so that no
class owns an exact colour.
"""

from __future__ import annotations

import numpy as np

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


def jitter_paint(rng, name_or_rgb, amount=0.07):
    """A paint with some random variation, so no class owns an exact colour."""
    rgb = np.array(PAINTS[name_or_rgb] if isinstance(name_or_rgb, str) else name_or_rgb,
                   np.float32)
    rgb = rgb * rng.normal(1.0, amount, 3) * rng.uniform(0.85, 1.08)
    return np.clip(rgb, 0.02, 1.0).astype(np.float32)


def pick_paint(rng, names, amount=0.07):
    return jitter_paint(rng, names[rng.integers(len(names))], amount)


ALL_PAINTS = list(PAINTS)
