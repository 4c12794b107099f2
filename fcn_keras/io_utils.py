"""File helpers shared by every writer: atomic writes and index-PNG masks.

Writes go to a temporary file in the destination folder and are renamed into place, so an
interrupted run never leaves a half-written mask, report or weights file behind.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from fcn_keras.errors import DataError


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    `suffix` defaults to the destination's suffix, so writers that look at the extension
    (PIL, Keras' `.weights.h5`) still see the right one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix is None:
        suffix = "".join(path.suffixes) or ".tmp"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def write_index_png(path: str | Path, mask: np.ndarray, palette: list[int] | None = None) -> None:
    """Write a 2-D uint8 class-index mask as a palette ('P') PNG, atomically."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    if palette is None:
        from fcn_keras.classes import voc_colormap
        palette = [v for color in voc_colormap(256) for v in color]
    # A palette of all 256 entries: with a shorter one PIL may save fewer bits per pixel and
    # silently fold indices beyond the palette's length.
    palette = list(palette)[:768] + [0] * max(0, 768 - len(palette))
    image = Image.fromarray(mask.astype(np.uint8), mode="L").convert("P")
    image.putpalette(palette)
    with atomic_path(path, suffix=".png") as tmp:
        image.save(tmp, format="PNG", optimize=False)


def read_image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header only: PIL decodes lazily, so no pixels are read."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (OSError, Image.DecompressionBombError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from None


def read_index_mask(path: str | Path) -> np.ndarray:
    """Read a mask PNG (mode L or P) as its raw indices; RGB masks are refused here."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("L", "P", "I", "I;16", "1"):
                raise DataError(
                    f"{path}: mask has mode {image.mode}; expected a single-channel index PNG "
                    "(mode L or P, pixel = class index)")
            return np.asarray(image).astype(np.uint8) if image.mode != "1" else \
                np.asarray(image, dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"{path}: mask file not found") from None
    except (OSError, Image.DecompressionBombError) as exc:
        raise DataError(f"{path}: not a readable mask image ({exc})") from None
