"""The training crop suited to a dataset's image size, read from the image headers only.

Two rules, one median:

- `fit_crop` (the bare `python fcn.py --train`, when --height/--width are not given): the
  median image, rounded up to the network stride, at most the book's 480x640 (640x480 for
  portrait photos). The book's default crop is kept for photos that large; on smaller images
  (the shipped 320x240 sample) a 480x640 crop would be three quarters ignore padding, which
  costs four times the compute for nothing.
- `suggest_crop` (`utils/dataset_info.py --crop`, the main job's quick preset): half the median
  side, at most 256, or the whole image with `--downsample`; see its docstring.
"""

from __future__ import annotations

from fcn_keras.errors import DataError

LARGEST = 256
BOOK_CROP = (480, 640)
MAX_HEADERS = 500   # images whose headers are read (evenly spread over a large split)


def image_sizes(samples, limit: int | None = MAX_HEADERS) -> list[tuple[int, int]]:
    """(height, width) of the samples' images from their headers; of at most `limit` of them,
    evenly spread, since a median needs no more and a split may hold 100,000 images."""
    from PIL import Image
    samples = list(samples)
    if limit and len(samples) > limit:
        samples = [samples[i * len(samples) // limit] for i in range(limit)]
    sizes = []
    for sample in samples:
        try:
            with Image.open(sample.image) as image:
                sizes.append((image.height, image.width))
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            # validation reads these headers too, but of a long split only some of them
            raise DataError(f"{sample.image}: not a readable image ({exc})") from None
    return sizes


def median_size(sizes) -> tuple[int, int]:
    """The median height and the median width (the upper one of an even count)."""
    heights = sorted(h for h, _ in sizes)
    widths = sorted(w for _, w in sizes)
    return heights[len(heights) // 2], widths[len(widths) // 2]


def fit_crop(sizes, stride: int, largest: tuple[int, int] = BOOK_CROP) -> tuple[int, int]:
    """(height, width): the median image rounded up to `stride`, each side at most `largest`
    (turned to the image's orientation), and at least `stride`."""
    height, width = median_size(sizes)
    cap_h, cap_w = largest if width >= height else largest[::-1]

    def side(value, cap):
        rounded = -(-value // stride) * stride
        return max(stride, min(rounded, cap))

    return side(height, cap_h), side(width, cap_w)


def suggest_crop(sizes, downsample: int = 1) -> tuple[int, int]:
    """(height, width) of the training crop for images of `sizes` [(height, width), ...]:
    half the median side (so a crop holds whole objects with context around them), at least
    the stride (32) and at most 256 a side (large photos are cut into 256x256 pieces, which
    train faster per pixel than whole images), in multiples of 32 with the image's aspect.

    `downsample` F > 1 (the network sees FxF-averaged images): the whole median image, at most
    256 F a side, so the network itself sees at most 256 positions a side, as without F, but
    each crop holds the whole scene (drinks: whole 224x320 images beat 128x160 crops, test
    mIoU 0.508 against 0.491 in the same 7.5 minutes)."""
    from fcn_keras.models import NETWORK_STRIDE as STRIDE  # imports Keras: only when asked
    height, width = median_size(sizes)
    if downsample > 1:
        scale = min(1.0, LARGEST * downsample / max(height, width))
        least = STRIDE * downsample

        def whole(value):
            return max(least, int(value * scale // STRIDE) * STRIDE)

        return whole(height), whole(width)
    scale = min(1.0, LARGEST / (max(height, width) / 2))

    def side(value):
        return max(STRIDE, int(round(value / 2 * scale / STRIDE)) * STRIDE)

    return side(height), side(width)
