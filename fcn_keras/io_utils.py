"""File helpers shared by every reader and writer: atomic writes, image checks, index-PNG masks.

Writes go to a temporary file in the destination folder and are renamed into place, so an
interrupted run never leaves a half-written mask, report or weights file behind. This module
imports nothing of the package but its errors, so every other module may use it.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import re
import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from fcn_keras.errors import DataError, OutputError

# zlib level of mask PNGs: level 1 is 3-4x faster than PIL's default 6 on label masks, which
# stay ~5 KB per 480x640 image (the book's pickled one-hot mask: 1.2 MB).
MASK_PNG_COMPRESSION = 1

# What the input pipeline's `tf.io.decode_image` decodes (PIL's format names).
PIPELINE_FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP")
# The file names taken for images (in order of preference when a stem has several): what PIL
# reads; `check_image` then names a format the pipeline cannot decode (TIFF, PPM).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")
# PIL modes of a single-channel index mask.
MASK_MODES = ("L", "P", "I", "I;16", "1")
# Lists of at most this many images get every check of every file before anything is done
# (`check_image`: headers, PNG checksums, JPEG end markers); a longer list gets them on this
# many, evenly spread (`spread`), and cheaper checks on all (docs/bad-input.md, "Long input
# lists"): the dataset checks, `datasets.checks`, and the converter, `annotations.convert`.
FULL_CHECK_LIMIT = 2000
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError,
                  Image.DecompressionBombError)


_UMASK = os.umask(0o022)   # read the process umask (there is no getter) and put it back
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | Path, suffix: str | None = None):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    `suffix` defaults to the destination's suffix, so writers that look at the extension
    (PIL, Keras' `.weights.h5`) still see the right one.
    """
    path = Path(path)
    if suffix is None:
        suffix = "".join(path.suffixes) or ".tmp"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    except OSError as exc:
        raise OutputError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    os.close(fd)
    try:
        try:
            yield Path(tmp)
        except OutputError:
            raise
        except OSError as exc:   # the writer failed: a full disk, a quota, an I/O error
            raise OutputError(f"{path}: cannot write ({write_error(exc)}); {_KEPT}") from None
        try:
            os.chmod(tmp, 0o666 & ~_UMASK)   # mkstemp's 0600 would outlive the rename
            os.replace(tmp, path)
        except OSError as exc:   # e.g. a folder of that name is in the way
            raise OutputError(f"{path}: cannot write here ({exc.strerror or exc})") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


_KEPT = "a previous file of that name is left as it was"

# Room kept free beyond a write's own size (file-system metadata, HDF5 headers, other writers).
FREE_SPACE_MARGIN = 16 * 2 ** 20


def write_error(exc: BaseException) -> str:
    """The reason of a failed write in a few words ("No space left on device"), also from
    h5py and TensorFlow, whose messages bury the errno in a long line."""
    strerror = getattr(exc, "strerror", None)
    if isinstance(strerror, str) and 0 < len(strerror) <= 200 and "errno" not in strerror:
        return strerror
    code = getattr(exc, "errno", None)
    if not isinstance(code, int):
        found = re.search(r"errno = (\d+)", str(exc))
        code = int(found.group(1)) if found else None
    if code:
        return os.strerror(code)
    text = re.sub(r"\{\{[^}]*\}\}|\[Op:\w+\]", "", str(exc)).strip()   # TensorFlow's
    text = text.splitlines()[0].rsplit("; ", 1)[-1] if text else type(exc).__name__
    return text.strip()[:200]


def ensure_free_space(folder: Path, nbytes: int, what: str) -> None:
    """Raise `OSError(ENOSPC)` unless `folder`'s file system has room for `nbytes` more (plus
    a margin). For writers that cannot fail cleanly halfway (HDF5); an approximate check, so
    the write itself still handles a failure."""
    folder = Path(folder)
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return   # cannot tell: let the write try
    if free < nbytes + FREE_SPACE_MARGIN:
        raise OSError(errno.ENOSPC, f"{os.strerror(errno.ENOSPC)}: {free / 2 ** 20:.1f} MB "
                      f"free in {folder}, {what} needs about "
                      f"{(nbytes + FREE_SPACE_MARGIN) / 2 ** 20:.1f} MB")


def atomic_write_text(path: str | Path, text: str) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_text(text, encoding="utf-8")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        Path(tmp).write_bytes(data)


def voc_colormap(n: int = 256) -> list[tuple[int, int, int]]:
    """The PASCAL VOC palette (bit-interleaved), which also gives distinct colours for any n."""
    colors = []
    for index in range(n):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        colors.append((r, g, b))
    return colors


def encode_index_png(mask: np.ndarray, palette: list[int] | None = None) -> bytes:
    """A 2-D class-index mask as the bytes of a palette ('P') PNG (default palette: VOC's)."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"mask must be 2-D, got shape {mask.shape}")
    if palette is None:
        palette = [v for color in voc_colormap(256) for v in color]
    # A palette of all 256 entries: with a shorter one PIL may save fewer bits per pixel and
    # silently fold indices beyond the palette's length.
    palette = list(palette)[:768] + [0] * max(0, 768 - len(palette))
    image = Image.frombytes("P", (mask.shape[1], mask.shape[0]),
                            np.ascontiguousarray(mask, dtype=np.uint8).tobytes())
    image.putpalette(palette)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=MASK_PNG_COMPRESSION)
    return buffer.getvalue()


def write_index_png(path: str | Path, mask: np.ndarray, palette: list[int] | None = None) -> None:
    """Write a 2-D uint8 class-index mask as a palette ('P') PNG, atomically."""
    atomic_write_bytes(path, encode_index_png(mask, palette))


def spread(items: list, limit: int) -> list:
    """At most `limit` of `items`, evenly spread (all of them when there are no more)."""
    if len(items) <= limit:
        return items
    return [items[i * len(items) // limit] for i in range(limit)]


class EvenSample:
    """At most `limit` items of a stream of unknown length, evenly spread: every `stride`-th
    item is kept, the stride doubling whenever more than twice `limit` are kept (so at most
    2 x `limit` are ever held); `chosen()` spreads those over `limit`. Up to 2 x `limit`
    items, that is `spread(items, limit)`."""

    def __init__(self, limit: int):
        self.limit, self.stride, self.seen = limit, 1, 0
        self.kept: list[tuple[int, object]] = []

    def offer(self, item) -> None:
        if self.seen % self.stride == 0:
            self.kept.append((self.seen, item))
            if len(self.kept) > 2 * self.limit:
                self.stride *= 2
                self.kept = [(i, x) for i, x in self.kept if i % self.stride == 0]
        self.seen += 1

    def chosen(self) -> list:
        return spread([item for _, item in self.kept], self.limit)


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
    """Read a mask PNG (mode L or P) as its raw indices; RGB masks are refused here, and so are
    16/32-bit masks with values outside 0..255 (a cast would silently wrap them)."""
    try:
        with Image.open(path) as image:
            if image.mode not in MASK_MODES:
                raise DataError(
                    f"{path}: mask has mode {image.mode}; expected a single-channel index PNG "
                    "(mode L or P, pixel = class index)")
            values = np.asarray(image)
    except FileNotFoundError:
        raise DataError(f"{path}: mask file not found") from None
    except _DECODE_ERRORS as exc:
        raise DataError(f"{path}: not a readable mask image ({exc})") from None
    if values.dtype != np.uint8 and values.size and (values.min() < 0 or values.max() > 255):
        raise DataError(f"{path}: {values.dtype.itemsize * 8}-bit mask with values "
                        f"{int(values.min())}..{int(values.max())}; mask values are class "
                        "indices 0..255")
    return values.astype(np.uint8)


def mask_histogram(path: str | Path) -> np.ndarray:
    """How many pixels of a mask hold each value 0..255."""
    return np.bincount(read_index_mask(path).ravel(), minlength=256)


def check_image(path: str | Path, pipeline: bool = True) -> tuple[int, int]:
    """(width, height) of an image the input pipeline can decode, else DataError naming it.

    Cheap (no pixels are decoded): the header; with `pipeline`, the format (what
    `tf.io.decode_image` takes); for PNG every chunk's CRC up to IEND (PIL's `verify`); for JPEG
    an end-of-image marker after the first scan. Together they catch empty, truncated and
    non-image files, which would otherwise stop training at the first batch that holds them.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise DataError(f"{path}: empty image file (0 bytes)")
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot open the image ({exc})") from None
    try:
        with Image.open(path) as image:
            size, fmt = image.size, image.format
            if fmt == "PNG":
                image.verify()
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except _DECODE_ERRORS as exc:
        raise DataError(f"{path}: not a readable image ({_reason(exc)})") from None
    if pipeline and fmt not in PIPELINE_FORMATS:
        raise DataError(f"{path}: {fmt} images cannot be decoded by the input pipeline (it takes "
                        "JPEG, PNG, BMP, GIF and WebP); convert the file, e.g. to PNG")
    if size[0] < 1 or size[1] < 1:
        raise DataError(f"{path}: image has no pixels ({size[0]}x{size[1]})")
    if fmt == "JPEG" and not _jpeg_complete(path):
        raise DataError(f"{path}: truncated JPEG (no end-of-image marker after the image data)")
    return size


def _reason(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.replace(", could be decompression bomb DOS attack.",
                        ": refused as a possible decompression bomb")


def _jpeg_complete(path: Path) -> bool:
    """Whether a JPEG has its end-of-image marker (FFD9) after the start of its first scan.

    The segments before the scan are skipped by their lengths, so the EOI of an EXIF thumbnail
    does not count; inside the scan FFD9 cannot occur (0xFF is always stuffed), and bytes after
    the EOI (camera trailers) are allowed, as decoders allow them.
    """
    try:
        data = path.read_bytes()
    except OSError:
        return False
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:                        # fill byte
            position += 1
        elif marker == 0xDA:                      # start of scan
            break
        elif marker == 0x01 or 0xD0 <= marker <= 0xD8:   # markers without a length
            position += 2
        else:
            position += 2 + int.from_bytes(data[position + 2:position + 4], "big")
    return data.find(b"\xff\xd9", position) != -1


# ---------------------------------------------------------------------------------------------
# Image headers without PIL: for lists of 100,000 images, where PIL's open costs more than the
# read itself.

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SOF = frozenset((0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE,
                       0xCF))


def quick_header(path: str | Path) -> tuple[str, tuple[int, int], int] | None:
    """(format, (width, height), EXIF orientation) of a PNG or JPEG from its first bytes, with
    a few small reads and no PIL; None for any other file, or anything unusual (missing, empty,
    truncated before the size, a size PIL would refuse), which the caller then gives to
    `check_image` for the usual message. The orientation is 1 where the file has none."""
    try:
        with open(path, "rb") as file:
            head = file.read(33)
            if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
                width, height = struct.unpack(">II", head[16:24])
                return _plausible("PNG", width, height, _png_orientation(file))
            if head[:2] == b"\xff\xd8":
                file.seek(2)
                found = _jpeg_header(file)
                return None if found is None else _plausible("JPEG", *found)
    except (OSError, ValueError, struct.error):
        return None
    return None


def _plausible(fmt: str, width: int, height: int, orientation: int):
    """None (the caller asks PIL, which gives the message) for no pixels or a size PIL refuses
    as a decompression bomb."""
    if width < 1 or height < 1 or width * height > 2 * (Image.MAX_IMAGE_PIXELS or float("inf")):
        return None
    return fmt, (width, height), orientation


def _png_orientation(file) -> int:
    """The orientation of a PNG's eXIf chunk, which must come before the image data."""
    file.seek(33)
    while True:
        chunk = file.read(8)
        if len(chunk) < 8 or chunk[4:8] in (b"IDAT", b"IEND"):
            return 1
        length = int.from_bytes(chunk[:4], "big")
        if chunk[4:8] == b"eXIf":
            return _exif_orientation(file.read(min(length, 65536)))
        file.seek(length + 4, os.SEEK_CUR)   # the data and the CRC


def _jpeg_header(file) -> tuple[int, int, int] | None:
    """(width, height, orientation) from the segments before a JPEG's first frame header."""
    orientation = 1
    while True:
        marker = file.read(2)
        while len(marker) == 2 and marker[0] == 0xFF and marker[1] == 0xFF:   # fill bytes
            marker = marker[1:] + file.read(1)
        if len(marker) < 2 or marker[0] != 0xFF:
            return None
        kind = marker[1]
        if kind == 0x01 or 0xD0 <= kind <= 0xD7:   # no length
            continue
        if kind in (0xD8, 0xD9, 0xDA):   # a second SOI, the end, or a scan before any frame
            return None
        length_bytes = file.read(2)
        if len(length_bytes) < 2:
            return None
        length = int.from_bytes(length_bytes, "big")
        if length < 2:
            return None
        if kind in _JPEG_SOF:
            frame = file.read(5)
            if len(frame) < 5:
                return None
            height, width = struct.unpack(">HH", frame[1:5])
            return width, height, orientation
        if kind == 0xE1 and orientation == 1:
            payload = file.read(min(length - 2, 65536))
            if payload[:6] == b"Exif\x00\x00":
                orientation = _exif_orientation(payload[6:])
            file.seek(length - 2 - len(payload), os.SEEK_CUR)
        else:
            file.seek(length - 2, os.SEEK_CUR)


def _exif_orientation(tiff: bytes) -> int:
    """Tag 0x0112 of the first IFD of a TIFF-structured EXIF block; 1 if absent or broken."""
    try:
        order = {b"II": "<", b"MM": ">"}[tiff[:2]]
        (offset,) = struct.unpack(order + "I", tiff[4:8])
        (count,) = struct.unpack(order + "H", tiff[offset:offset + 2])
        for index in range(count):
            start = offset + 2 + 12 * index
            tag, kind = struct.unpack(order + "HH", tiff[start:start + 4])
            if tag == 0x0112 and kind == 3:   # SHORT
                return struct.unpack(order + "H", tiff[start + 8:start + 10])[0]
    except (KeyError, struct.error):
        pass
    return 1
