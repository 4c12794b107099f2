"""Dataset readers: every supported layout becomes one `SegmentationDataset` of (image, mask) pairs.

Downstream code (the tf.data pipeline, evaluation, reports) never looks at a layout again: it gets
image files, single-channel index masks (pixel = class index, `ClassInfo.ignore_index` = ignore)
and one `ClassInfo`. One module per layout, each with `load(root, options)`:

- `folder` (native): `images/`, `masks/`, `classes.json`, `train.txt` / `val.txt` / `test.txt`.
- `voc`: PASCAL VOC (and CVAT's segmentation-mask export, `cvat-mask`).
- `camvid`: the SegNet lists of `image mask` pairs.
- `via`: the book's images plus VIA JSON files, through the annotation converter.
- `npy`: the book's pickled one-hot labels (only with `allow_pickle`).
- `annotated`: folders of COCO, LabelMe or CVAT annotations, through the converter.

Shared: `base` (samples, list files, renaming classes, the val holdout), `cache` (the one
manifest cache of converted labels under `<root>/.fcn_cache/`) and `checks` (validation).

Splits: `train`, `val` and `test` come from the layout's list or label files when present. When a
layout has training data but no validation list, `val` is a deterministic holdout of about
`val_fraction` of the training stems (a stem goes to `val` when a stable hash of its name falls
below `val_fraction`; at least one image, never all of them) and those stems leave `train`. The
choice of a stem never depends on the other stems, so adding images does not reshuffle `val`.
A test list whose masks are all absent (VOC's test release) gives samples with `mask=None`.

Paths in list and label files must stay inside the data folder: absolute paths and `..` are
refused, except SegNet's absolute paths (`/SegNet/CamVid/train/x.png`), which are mapped to their
last two components inside the data folder.
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

from fcn_keras.classes import parse_class_names
from fcn_keras.datasets import annotated, camvid, folder, npy, via, voc
from fcn_keras.datasets.base import (
    LoadOptions,
    Sample,
    SegmentationDataset,
    add_holdout,
    mark_unlabelled_test,
)
from fcn_keras.datasets.cache import CACHE_DIR
from fcn_keras.datasets.checks import check_mask_values, validate_dataset
from fcn_keras.errors import DataError

LOADERS = {"via": via.load, "folder": folder.load, "voc": voc.load, "camvid": camvid.load,
           "npy": npy.load, **{fmt: partial(annotated.load, fmt=fmt) for fmt in annotated.FORMATS},
           "cvat-mask": voc.load_cvat_mask}
FORMATS = tuple(LOADERS)
MASK_CHECK_LIMIT = 2000

FORMAT_HELP = """\
  via:    images plus VIA JSON annotations (segmentation_train.json, segmentation_test.json)
  npy:    images plus the book's pickled labels (segmentation_train.npy; needs --allow-pickle)
  folder: images/ and masks/ folders, classes.json, train.txt/val.txt/test.txt (one stem a line)
  voc:    JPEGImages/, SegmentationClass/, ImageSets/Segmentation/train.txt (or VOCdevkit/)
  camvid: train.txt/val.txt/test.txt of 'image_path mask_path' lines (SegNet layout)
  coco:   annotations/*.json (COCO instances) and images/
  cvat:   annotations.xml (CVAT for images 1.1) and images/
  labelme: LabelMe .json files (in the folder, or in train/, val/, test/)
  cvat-mask: a VOC layout with labelmap.txt (CVAT's "Segmentation mask 1.1" export)"""

__all__ = ["CACHE_DIR", "FORMATS", "LoadOptions", "Sample", "SegmentationDataset",
           "check_mask_values", "detect_format", "load_dataset", "validate_dataset"]


def detect_format(data_path, train_labels: str = "segmentation_train.json") -> str:
    """The layout of `data_path` from its contents: 'via', 'npy', 'folder', 'voc', 'camvid', or
    one of the annotation folders."""
    root = Path(data_path)
    if not root.is_dir():
        raise DataError(f"{root}: data path is not a folder")
    options = LoadOptions(train_labels=train_labels)
    for fmt, looks_like in (("voc", voc.looks_like), ("camvid", camvid.looks_like),
                            ("via", partial(via.looks_like, options=options)),
                            ("npy", partial(npy.looks_like, options=options)),
                            ("folder", folder.looks_like)):
        if looks_like(root):
            return fmt
    annotated_format = annotated.detect(root)
    if annotated_format is not None:
        return annotated_format
    found = sorted(p.name + ("/" if p.is_dir() else "") for p in root.iterdir())
    shown = ", ".join(found[:12]) + (f" and {len(found) - 12} more" if len(found) > 12 else "")
    raise DataError(f"{root}: cannot tell the dataset format (found: {shown or 'nothing'}). "
                    f"Expected one of:\n{FORMAT_HELP}\nPass --data-format to choose one.")


def load_dataset(data_path, data_format: str = "auto", allow_pickle: bool = False,
                 train_labels: str = "segmentation_train.json",
                 test_labels: str = "segmentation_test.json", val_fraction: float = 0.1,
                 classes=None, attribute: str | None = None,
                 validate: bool = True) -> SegmentationDataset:
    """Read any supported layout (see the module docstring) as one `SegmentationDataset`.

    `classes`: class names (a list, a comma-separated string or a `ClassInfo`): for VIA the
    converter's classes (background first); for the other layouts new names for the layout's
    classes, which must have the same count. `attribute`: the VIA region attribute holding the
    class. `train_labels` / `test_labels` name the VIA JSON or book `.npy` files (either suffix
    works for either layout); the validation file is the same name with `train` replaced by `val`.

    With `validate` (the default) every split is checked before anything is trained: missing,
    empty, truncated or undecodable files (`io_utils.check_image`: headers, PNG checksums, JPEG
    end markers; no pixels decoded), image/mask size mismatches and empty splits are reported
    together, and the mask values of each split of at most 2000 samples are decoded and checked
    by `check_mask_values` (a larger split, such as a full VOC-augmented set, would take minutes;
    call `check_mask_values` yourself for it). A split of more than 2000 samples gets the file
    checks on 2000 of them, evenly spread, and on all of them only whether each file exists and
    is not empty; the input pipeline checks the others as it reads them and stops naming the
    file (`datasets.checks`; 100,000 entries take seconds instead of a minute).
    """
    root = Path(data_path)
    if not root.is_dir():
        raise DataError(f"{root}: data path is not a folder")
    fmt = detect_format(root, train_labels) if data_format == "auto" else data_format
    if fmt not in LOADERS:
        raise DataError(f"unknown data format '{fmt}'; choose one of auto, {', '.join(FORMATS)}")
    options = LoadOptions(parse_class_names(classes), attribute, allow_pickle, train_labels,
                          test_labels)
    if not 0 <= val_fraction < 1:
        raise DataError(f"val_fraction must be in [0, 1), got {val_fraction}")
    dataset = LOADERS[fmt](root, options)
    mark_unlabelled_test(dataset)
    add_holdout(dataset, val_fraction)
    if validate:
        validate_dataset(dataset)
        for name, samples in dataset.splits.items():
            if samples and len(samples) <= MASK_CHECK_LIMIT:
                check_mask_values(dataset, name)
    for note in dataset.notes:
        print(f"note: {note}", file=sys.stderr)
    return dataset
