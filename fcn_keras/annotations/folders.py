"""Dataset folders of annotations (``--data-format coco|labelme|cvat``) as training data.

`fcn_keras.datasets.annotated` reads a folder of one of these layouts by converting its
annotations once into ``<root>/.fcn_cache/masks-<format>/`` and re-using them while the
annotation files are unchanged (`stamp`; the same manifest cache as the book's VIA layout):

- **coco**: ``annotations/*.json`` (or ``*.json`` in the folder) with the images in ``images/``
  (or the folder itself): the layout of CVAT's, Label Studio's and most tools' COCO exports.
- **cvat**: ``*.xml`` (CVAT for images 1.1, e.g. ``annotations.xml``) with the images in
  ``images/`` (or the folder itself).
- **labelme**: the LabelMe JSON files in the folder, or in its ``train/``, ``val/`` and
  ``test/`` subfolders (each then a split); ``imagePath`` relative to each JSON file.

Split lists are named after the files (``instances_train.json`` -> train, a CVAT ``subset``,
a LabelMe subfolder): a name holding ``train``, ``val`` or ``test`` is that split, any other
(``instances_default``, ``annotations``) is train, from which val is then held out.
"""

from __future__ import annotations

from pathlib import Path

from fcn_keras.errors import DataError

SPLIT_WORDS = (("train", "train"), ("val", "val"), ("test", "test"))


def annotation_inputs(root: Path, fmt: str) -> tuple[list[Path], Path]:
    """(annotation files or folders, image folder) of a dataset folder of format `fmt`."""
    images = root / "images" if (root / "images").is_dir() else root
    if fmt == "cvat":
        inputs = sorted(root.glob("*.xml"))
    elif fmt == "coco":
        inputs = sorted((root / "annotations").glob("*.json")) or sorted(root.glob("*.json"))
        inputs = [p for p in inputs if p.name != "classes.json"]
    else:
        inputs = [root / s for s in ("train", "val", "test") if any((root / s).glob("*.json"))]
        inputs, images = inputs or [root], root
    if not inputs:
        raise DataError(f"{root}: no {fmt} annotation files found (see --data-format help)")
    return inputs, images


def looks_like(root: Path) -> str | None:
    """'cvat', 'coco' or 'labelme' when the folder holds such annotations, else None."""
    if (root / "annotations.xml").is_file():
        return "cvat"
    candidates = [sorted(folder.glob("*.json"))[:1] for folder in
                  (root / "annotations", root, root / "train", root / "val", root / "test")]
    for path in [p for found in candidates for p in found]:
        head = _head(path)
        if '"images"' in head and '"annotations"' in head:
            return "coco"
        if '"shapes"' in head:
            return "labelme"
    return None


def _head(path: Path, size: int = 65536) -> str:
    try:
        with open(path, "rb") as handle:
            return handle.read(size).decode("utf-8", "replace")
    except OSError:
        return ""


def split_of(list_name: str) -> str:
    folded = list_name.casefold()
    for word, split in SPLIT_WORDS:
        if word in folded:
            return split
    return "train"


def stamp(path: Path) -> list:
    """What identifies an input's content cheaply: name, size and mtime of the file, or of
    each JSON file of a folder."""
    files = sorted(path.glob("*.json")) if path.is_dir() else [path]
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]
