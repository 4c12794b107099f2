"""Turning images into label maps: batched whole-image prediction, sliding-window (tiled)
prediction with averaged overlaps as in the d2l chapter, and flip test-time augmentation.

The model already takes any size (it pads to its stride and crops back), so whole-image
prediction needs no resizing. Tiling is for images too large to fit in memory at once.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf


class Predictor:
    """Wraps a segmentation model with compiled inference functions."""

    def __init__(self, model, tta: str = "none", tile: tuple[int, int] | None = None,
                 overlap: float = 1 / 3, jit: bool = False):
        self.model = model
        self.tta = tta
        self.tile = tile
        self.overlap = overlap
        self._probs = tf.function(self._probabilities, reduce_retracing=True, jit_compile=jit)

    def _probabilities(self, images):
        probs = tf.cast(self.model(images, training=False), tf.float32)
        if self.tta == "flip":
            flipped = tf.cast(self.model(tf.reverse(images, [2]), training=False), tf.float32)
            probs = (probs + tf.reverse(flipped, [2])) / 2.0
        return probs

    def probabilities(self, images) -> np.ndarray:
        """Per-pixel class probabilities for a float32 [0, 1] batch (N, H, W, C)."""
        images = tf.convert_to_tensor(images, tf.float32)
        if self.tile is None:
            return self._probs(images).numpy()
        return np.stack([self._tiled(image) for image in images.numpy()])

    def labels(self, images) -> np.ndarray:
        """Per-pixel class indices (uint8) for a batch."""
        return np.argmax(self.probabilities(images), axis=-1).astype(np.uint8)

    def _tiled(self, image: np.ndarray) -> np.ndarray:
        """Average the probabilities of overlapping windows that together cover the image."""
        height, width = image.shape[:2]
        tile_h, tile_w = min(self.tile[0], height), min(self.tile[1], width)
        total = None
        counts = np.zeros((height, width, 1), np.float32)
        windows = [(top, left) for top in window_starts(height, tile_h, self.overlap)
                   for left in window_starts(width, tile_w, self.overlap)]
        for top, left in windows:
            crop = image[None, top:top + tile_h, left:left + tile_w]
            probs = self._probs(tf.convert_to_tensor(crop)).numpy()[0]
            if total is None:
                total = np.zeros((height, width, probs.shape[-1]), np.float32)
            total[top:top + tile_h, left:left + tile_w] += probs
            counts[top:top + tile_h, left:left + tile_w] += 1
        return total / counts


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Start offsets of windows of `window` pixels covering `size` with at least `overlap`."""
    if window >= size:
        return [0]
    step = max(1, int(window * (1 - overlap)))
    starts = list(range(0, size - window, step))
    starts.append(size - window)
    return sorted(set(starts))
