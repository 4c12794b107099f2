"""The camera and the light: where the table lies in the image, how big a centimetre is at each
row, where the light comes from, and what the camera does to the finished picture (uneven
light, exposure, white balance, lens blur, sensor noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter


@dataclass
class Camera:
    """Where the table lies in the image and how big a centimetre is at each image row."""

    width: int
    height: int
    y_edge: float       # image row of the far edge of the table
    y_vanish: float     # image row where the table plane vanishes
    focal: float        # focal length in pixels
    scale_slope: float  # pixels per centimetre per row below y_vanish

    def scale(self, y):
        """Pixels per centimetre for something standing on the table at image row y."""
        return self.scale_slope * (y - self.y_vanish)

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
    scale_slope = can_at_bottom * height / (12.2 * (height - y_vanish))
    return Camera(width, height, y_edge, y_vanish, focal, scale_slope)


def sample_light(rng):
    warm = rng.uniform(-1, 1)
    tint = np.array([1 + 0.06 * warm, 1.0, 1 - 0.08 * warm], np.float32)
    azimuth = rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 1.25)
    return Light(azimuth=azimuth, elevation=rng.uniform(0.5, 1.0), ambient=rng.uniform(0.28, 0.5),
                 towards_camera=rng.uniform(-0.8, 0.5), tint=tint)


def blur_float(rgb, radius):
    """Gaussian blur of a float image through 8-bit PIL (fast; precision is plenty here)."""
    if radius < 0.2:
        return rgb
    img = Image.fromarray((np.clip(rgb, 0, 1) * 255 + 0.5).astype(np.uint8))
    return np.asarray(img.filter(ImageFilter.GaussianBlur(radius)), np.float32) / 255


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
