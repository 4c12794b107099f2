"""The dataset on disk in the book's layout: JPEG images, `segmentation_train.json` /
`segmentation_test.json` in VIA 2.x export format, and `classes.json`.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from fcn_keras.classes import IGNORE_INDEX

from .drinks import CLASS_COLORS, CLASS_NAMES
from .scene import render_scene


def encode_jpeg(rng, pixels, quality):
    """JPEG bytes; half the images went through a phone's stronger compression first."""
    image = Image.fromarray(pixels)
    if rng.random() < 0.5:
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=int(rng.integers(60, 90)))
        image = Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def via_entry(filename, size, regions):
    """One image in VIA 2.x export format (regions as polygons, class in region_attributes)."""
    return {
        "filename": filename,
        "size": size,
        "regions": [{"shape_attributes": {"name": "polygon", "all_points_x": xs,
                                          "all_points_y": ys},
                     "region_attributes": {"name": str(class_id)}}
                    for class_id, (xs, ys) in regions],
        "file_attributes": {},
    }


def write_json(path, data, indent=None):
    tmp = path.with_name(path.name + ".tmp")
    separators = (",", ":") if indent is None else None  # compact, as VIA writes it
    tmp.write_text(json.dumps(data, indent=indent, separators=separators) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)


def generate_dataset(out, n_train=160, n_test=40, width=320, height=240, seed=0, quality=90,
                     progress=False):
    """Write the images, the two VIA files and classes.json; returns {split: via_dict}."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    splits = {"train": {}, "test": {}}
    indices = range(n_train + n_test)
    if progress:
        from tqdm import tqdm
        indices = tqdm(indices, desc="drawing", unit="image")
    for index in indices:
        rng = np.random.default_rng([seed, index])
        pixels, regions = render_scene(rng, width, height)
        data = encode_jpeg(rng, pixels, quality)
        filename = f"{index + 1:07d}.jpg"
        (out / filename).write_bytes(data)
        split = "train" if index < n_train else "test"
        splits[split][filename + str(len(data))] = via_entry(filename, len(data), regions)
    for split, via in splits.items():
        write_json(out / f"segmentation_{split}.json", via)
    classes = {"names": CLASS_NAMES, "colors": [list(c) for c in CLASS_COLORS],
               "ignore_index": IGNORE_INDEX}
    write_json(out / "classes.json", classes, indent=2)
    return splits
