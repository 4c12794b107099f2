"""Predicted masks -> a VIA 2.x project file, so that annotating the next photos starts from the
model's guess: open it in VIA (Project > Load), correct the polygons, save, convert as usual.

The file is what VIA 2.0.x itself saves (``_via_settings``, ``_via_img_metadata``,
``_via_attributes``, ``_via_data_format_version``, ``_via_image_id_list``), which the project's
converter reads too (`fcn_keras.annotations.via`). Each image entry is keyed by file name plus
file size in bytes, as VIA keys its images, and holds one polygon region per connected
component of each predicted class (`fcn_keras.annotations.polygons`: traced outlines, holes
bridged in, simplified, specks left out). The class name goes into the region attribute
`attribute` (default ``name``, the book's key), declared as a dropdown of the model's classes so
that a correction is a choice in a list, not typing. File names are relative to `root`, the
folder to give the converter as ``-p``; VIA looks for the images there too
(``default_filepath``).

Round trip: ``utils/generate_gt_segmentation.py -p ROOT -j FILE.json --classes CLASSES.json``
gives back the predicted masks (tests: >= 97% of each class's pixels).
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath

import numpy as np

from fcn_keras.annotations.polygons import DEFAULT_MIN_AREA, DEFAULT_TOLERANCE, mask_polygons
from fcn_keras.errors import DataError
from fcn_keras.io_utils import atomic_write_text

VIA_FORMAT_VERSION = "2.0.10"
DEFAULT_ATTRIBUTE = "name"


class ViaProject:
    """A VIA 2.x project built one image at a time (only the polygons are kept, not the masks,
    so a folder of any size fits in memory), then written atomically."""

    def __init__(self, root, classes, attribute: str = DEFAULT_ATTRIBUTE,
                 tolerance: float = DEFAULT_TOLERANCE, min_area: int = DEFAULT_MIN_AREA):
        self.root = Path(root)
        self.classes = classes
        self.attribute = attribute or DEFAULT_ATTRIBUTE
        self.tolerance = tolerance
        self.min_area = min_area
        self.entries: dict[str, dict] = {}

    def add(self, image_path, mask: np.ndarray) -> int:
        """Add an image and its predicted (H, W) class-index mask; the number of regions."""
        image_path = Path(image_path)
        filename = self.relative_name(image_path)
        skip = (0, self.classes.ignore_index)
        regions = [self.region(p) for p in mask_polygons(mask, tolerance=self.tolerance,
                                                         min_area=self.min_area, skip=skip)]
        size = image_path.stat().st_size
        self.entries[f"{filename}{size}"] = {"filename": filename, "size": size,
                                             "regions": regions, "file_attributes": {}}
        return len(regions)

    def relative_name(self, image_path: Path) -> str:
        """The image's name relative to `root` with forward slashes, as VIA and the converter
        expect; an image outside `root` cannot be named so."""
        try:
            relative = Path(os.path.abspath(image_path)).relative_to(os.path.abspath(self.root))
        except ValueError:
            raise DataError(f"{image_path}: not inside {self.root}, the folder the VIA file's "
                            "image names are relative to") from None
        return str(PurePosixPath(relative.as_posix()))

    def region(self, polygon) -> dict:
        name = self.classes.names[polygon.class_index]
        return {"shape_attributes": {"name": "polygon", "all_points_x": polygon.xs,
                                     "all_points_y": polygon.ys},
                "region_attributes": {self.attribute: name}}

    def document(self, name: str = "fcn-keras predictions") -> dict:
        """The project as VIA 2.0.x saves it."""
        options = {n: "" for n in self.classes.names[1:]}
        return {"_via_settings": via_settings(name, self.root, self.attribute),
                "_via_img_metadata": self.entries,
                "_via_attributes": {"region": {self.attribute: {
                    "type": "dropdown", "description": "class (predicted by fcn-keras)",
                    "options": options, "default_options": {}}}, "file": {}},
                "_via_data_format_version": VIA_FORMAT_VERSION,
                "_via_image_id_list": list(self.entries)}

    def write(self, path) -> Path:
        """Write the project to `path` (a temporary file renamed into place: a reader never
        sees half a file, and a failed write leaves the previous file as it was)."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.document(path.stem)) + "\n")
        return path


def via_settings(name: str, root: Path, attribute: str) -> dict:
    """VIA 2.0.x's default settings, with the project name, the image folder and the class
    attribute shown as each region's label."""
    return {"ui": {"annotation_editor_height": 25, "annotation_editor_fontsize": 0.8,
                   "leftsidebar_width": 18,
                   "image_grid": {"img_height": 80, "rshape_fill": "none",
                                  "rshape_fill_opacity": 0.3, "rshape_stroke": "yellow",
                                  "rshape_stroke_width": 2, "show_region_shape": True,
                                  "show_image_policy": "all"},
                   "image": {"region_label": attribute,
                             "region_color": attribute,
                             "region_label_font": "10px Sans",
                             "on_image_annotation_editor_placement": "NEAR_REGION"}},
            "core": {"buffer_size": 18, "filepath": {},
                     "default_filepath": os.path.abspath(root) + os.sep},
            "project": {"name": name}}
