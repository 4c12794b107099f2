"""The book's layout: images plus VIA JSON annotations, `segmentation_train.json` /
`segmentation_test.json` (and `segmentation_val.json` if present), converted by
`fcn_keras.annotations.convert.convert_via` into `<root>/masks/`. A second load re-uses those
masks while the JSON files, `classes.json` and the options are unchanged."""

from __future__ import annotations

from pathlib import Path

from fcn_keras.classes import ClassInfo
from fcn_keras.datasets import cache
from fcn_keras.datasets.base import LoadOptions, SegmentationDataset, label_files, label_name

MANIFEST = "via_manifest.json"


def looks_like(root: Path, options: LoadOptions) -> bool:
    return (root / label_name(options.train_labels, ".json")).is_file()


def load(root: Path, options: LoadOptions) -> SegmentationDataset:
    files = label_files(root, options, ".json", "VIA annotations",
                        "; a VIA dataset holds the images and their VIA JSON files")
    output_dir = root / "masks"
    classes_json = root / "classes.json"
    request = {"jsons": {split: cache.file_stamp(path) for split, path in files.items()},
               "classes": options.names, "attribute": options.attribute,
               "classes_json": cache.file_stamp(classes_json) if classes_json.is_file() else None}

    def is_complete(manifest: dict) -> bool:
        """Its masks (and classes.json) are all there and newer than the JSON files."""
        newest = max(path.stat().st_mtime for path in files.values())
        masks = [root / rel for rel in manifest["masks"].values()]
        return (all(cache.is_fresh(path, newest) for path in [output_dir / "classes.json", *masks])
                and cache.record_is_whole(manifest))

    manifest_path = root / cache.CACHE_DIR / MANIFEST
    record = cache.read_manifest(manifest_path, request, is_complete)
    if record is None:
        record = _convert(root, files, output_dir, options, classes_json)
        cache.cache_dir(root)
        record = cache.write_manifest(manifest_path, request, record)
    return SegmentationDataset(root, "via", cache.record_classes(record),
                               cache.record_samples(record, root))


def _convert(root: Path, files: dict[str, Path], output_dir: Path, options: LoadOptions,
             classes_json: Path) -> dict:
    from fcn_keras.annotations.convert import convert_via
    given = options.names
    if given is None and classes_json.is_file():
        given = ClassInfo.load(classes_json)  # names and colours, index 0 first
    result = convert_via(list(files.values()), root, output_dir=output_dir, classes=given,
                         attribute=options.attribute, skip_missing=False, draw_order="area",
                         progress=False)
    splits = {split: list(result.stems.get(path.stem, [])) for split, path in files.items()}
    return cache.converted_record(result, splits, root)
