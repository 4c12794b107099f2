"""CVAT / VOC "Segmentation mask 1.1" folders -> records.

``labelmap.txt`` (``name:r,g,b:parts:actions`` lines, background first), ``SegmentationClass/
<stem>.png`` colour masks (RGB, or palette PNGs whose palette holds the labelmap colours),
images in ``JPEGImages/`` and, optionally, split lists ``ImageSets/Segmentation/<split>.txt``.
Each colour of a mask becomes one region of its class (the background colour paints 0); a colour
that is not in the labelmap is an error naming the file and the colour, since guessing a class
for it would silently corrupt the labels. Classes and colours are the labelmap's, in its order.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fcn_keras.annotations.classes import BACKGROUND_NAMES, read_class_file
from fcn_keras.annotations.records import AnnotatedImage, Annotations, Region, relative_folder
from fcn_keras.errors import DataError
from fcn_keras.io_utils import IMAGE_SUFFIXES, check_image

MAX_COLOURS_SHOWN = 5


def read(source, document=None) -> Annotations:
    folder = source.path.parent if source.path.is_file() else source.path
    found = Annotations()
    base = relative_folder(folder, source.data_path)
    if base is None:
        found.problems.append(f"{folder}: the mask folder is outside the data folder "
                              f"{source.data_path}; pass it as --data-path")
        return found
    try:
        info = read_class_file(folder / "labelmap.txt")
    except DataError as exc:
        found.problems.append(str(exc))
        return found
    found.declared = list(zip(info.names, info.colors))
    colours = {_key(c): name for name, c in zip(info.names, info.colors)}
    masks = sorted((folder / "SegmentationClass").glob("*.png"))
    if not masks:
        found.problems.append(f"{folder / 'SegmentationClass'}: no .png masks")
    splits = _split_of(folder)
    images = _image_files(folder / "JPEGImages")
    for mask in masks:
        image = _image(mask, images, base, colours, found.problems)
        if image is not None:
            image.split = splits.get(mask.stem)
            found.images.append(image)
    return found


def _key(color) -> int:
    r, g, b = color
    return (int(r) << 16) | (int(g) << 8) | int(b)


def _split_of(folder: Path) -> dict[str, str]:
    """stem -> split list name, from ImageSets/Segmentation/*.txt (when there are lists)."""
    splits = {}
    for listing in sorted((folder / "ImageSets" / "Segmentation").glob("*.txt")):
        try:
            lines = listing.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue   # the stems then fall back to the folder's list
        for line in lines:
            if line.strip():
                splits.setdefault(line.split()[0], listing.stem)
    return splits


def _image_files(folder: Path) -> dict[str, str]:
    """stem -> file name of the images (the first known suffix wins)."""
    found: dict[str, str] = {}
    if folder.is_dir():
        for path in sorted(folder.iterdir(), key=lambda p: (p.suffix.lower() not in
                                                             IMAGE_SUFFIXES, p.name)):
            if path.suffix.lower() in IMAGE_SUFFIXES:
                found.setdefault(path.stem, path.name)
    return found


def _image(mask: Path, images: dict[str, str], base, colours: dict[int, str],
           problems: list[str]) -> AnnotatedImage | None:
    where = f"SegmentationClass/{mask.name}"
    try:
        check_image(mask, pipeline=False)
        with Image.open(mask) as picture:
            rgb = np.asarray(picture.convert("RGB"), dtype=np.int32)
    except (DataError, OSError, ValueError) as exc:
        problems.append(f"{where}: not a readable mask ({exc})")
        return None
    keys = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    values, counts = np.unique(keys, return_counts=True)
    unknown = [int(v) for v in values if int(v) not in colours]
    if unknown:
        shown = ", ".join(f"({v >> 16}, {(v >> 8) & 255}, {v & 255})"
                          for v in unknown[:MAX_COLOURS_SHOWN])
        more = f" and {len(unknown) - MAX_COLOURS_SHOWN} more" if len(unknown) > 5 else ""
        problems.append(f"{where}: colour(s) {shown}{more} are not in labelmap.txt")
        return None
    name = images.get(mask.stem, f"{mask.stem}.jpg")
    image = AnnotatedImage(f"{base / 'JPEGImages' / name}".removeprefix("./"), [],
                           source=where, size=keys.shape)
    for value, count in zip(values.tolist(), counts.tolist()):
        if colours[value] in BACKGROUND_NAMES:
            continue
        color = (value >> 16, (value >> 8) & 255, value & 255)
        image.regions.append(Region("color_mask", {"path": mask, "color": color, "area": count},
                                    colours[value], len(image.regions)))
    return image
