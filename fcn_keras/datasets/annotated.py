"""Folders of COCO, LabelMe or CVAT annotations (`--data-format coco|labelme|cvat`), converted
once by `fcn_keras.annotations.convert.convert_annotations` into
`<root>/.fcn_cache/masks-<format>/` and re-used while the annotation files are unchanged.
Where the annotations and images sit, and which split a file is: `fcn_keras.annotations.folders`.
"""

from __future__ import annotations

from pathlib import Path

from fcn_keras.datasets import cache
from fcn_keras.datasets.base import LoadOptions, SegmentationDataset

FORMATS = ("coco", "labelme", "cvat")


def detect(root: Path) -> str | None:
    """'cvat', 'coco' or 'labelme' when the folder holds such annotations, else None."""
    from fcn_keras.annotations import folders
    return folders.looks_like(root)


def load(root: Path, options: LoadOptions, fmt: str) -> SegmentationDataset:
    from fcn_keras.annotations import folders  # the readers load only for these layouts

    inputs, images = folders.annotation_inputs(root, fmt)
    request = {"inputs": {str(p): folders.stamp(p) for p in inputs}, "classes": options.names,
               "attribute": options.attribute}

    def is_complete(manifest: dict) -> bool:
        return (all((root / rel).is_file() for rel in manifest["masks"].values())
                and cache.record_is_whole(manifest))

    manifest_path = root / cache.CACHE_DIR / f"{fmt}_manifest.json"
    record = cache.read_manifest(manifest_path, request, is_complete)
    if record is None:
        from fcn_keras.annotations.convert import convert_annotations
        result = convert_annotations(inputs, images, root / cache.CACHE_DIR / f"masks-{fmt}",
                                     classes=options.names, attribute=options.attribute, fmt=fmt)
        splits: dict[str, list[str]] = {}
        for list_name, stems in result.stems.items():
            splits.setdefault(folders.split_of(list_name), []).extend(stems)
        cache.cache_dir(root)
        record = cache.write_manifest(manifest_path, request,
                                      cache.converted_record(result, splits, root))
    return SegmentationDataset(root, fmt, cache.record_classes(record),
                               cache.record_samples(record, root))
