"""The book's layout: images plus VIA JSON annotations, `segmentation_train.json` /
`segmentation_test.json` (and `segmentation_val.json` if present), converted by
`fcn_keras.annotations.convert.convert_via` into `<root>/masks/`. A second load re-uses those
masks while the JSON files, `classes.json` and the options are unchanged."""

from __future__ import annotations

from pathlib import Path

from fcn_keras.classes import ClassInfo
from fcn_keras.datasets import cache
from fcn_keras.datasets.base import LoadOptions, SegmentationDataset, label_files, label_name
from fcn_keras.errors import ConfigError

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
        """Its masks (and classes.json) are all there and newer than the JSON files, and the
        converter has not renumbered the masks since (else its classes are read again)."""
        newest = max(path.stat().st_mtime for path in files.values())
        masks = [root / rel for rel in manifest["masks"].values()]
        return (all(cache.is_fresh(path, newest) for path in [output_dir / "classes.json", *masks])
                and cache.record_is_whole(manifest)
                and ClassInfo.load(output_dir / "classes.json").to_dict()
                == cache.record_classes(manifest).to_dict())

    manifest_path = root / cache.CACHE_DIR / MANIFEST
    record = cache.read_manifest(manifest_path, request, is_complete)
    if record is None:
        record = _convert(root, files, output_dir, options)
        cache.cache_dir(root)
        record = cache.write_manifest(manifest_path, request, record)
    return SegmentationDataset(root, "via", cache.record_classes(record),
                               cache.record_samples(record, root))


def _convert(root: Path, files: dict[str, Path], output_dir: Path,
             options: LoadOptions) -> dict:
    from fcn_keras.annotations.convert import convert_via
    given = _via_classes(root, options.names, output_dir)
    result = convert_via(list(files.values()), root, output_dir=output_dir, classes=given,
                         attribute=options.attribute, skip_missing=False, draw_order="area",
                         progress=False)
    splits = {split: list(result.stems.get(path.stem, [])) for split, path in files.items()}
    return cache.converted_record(result, splits, root)


def _via_classes(root: Path, names: list[str] | None, output_dir: Path):
    """The classes to convert the VIA files with, so that training never renumbers masks a
    user converted (the book's two steps: `utils/generate_gt_segmentation.py --classes ...`,
    then `fcn.py --train` without --classes).

    The masks' own `classes.json` (beside them, written by the converter) comes first, then the
    dataset's `classes.json`, then the converter's default rule. `--classes` (`names`) and the
    dataset's file must name the classes in the masks' order, else a `ConfigError` names both
    orders and the file: renumbering is the converter's job, asked for explicitly."""
    masks_file, dataset_file = output_dir / "classes.json", root / "classes.json"
    saved = [(path, ClassInfo.load(path)) for path in (masks_file, dataset_file)
             if path.is_file()]
    if names is not None:
        from fcn_keras.annotations.classes import parse_classes
        wanted = parse_classes(names)
        for path, info in saved:
            if info.names != wanted.names:
                raise ConfigError(_classes_disagree(f"--classes {','.join(names)}", wanted,
                                                    path, info, root))
        return saved[0][1] if saved else names   # the file's colours with the same names
    if len(saved) == 2 and saved[0][1].names != saved[1][1].names:
        raise ConfigError(_classes_disagree(str(dataset_file), saved[1][1], *saved[0], root))
    return saved[0][1] if saved else None


def _classes_disagree(what: str, wanted: ClassInfo, path: Path, info: ClassInfo,
                      root: Path) -> str:
    return (f"{what} numbers the classes {', '.join(_numbered(wanted))}, but {path} (the "
            f"classes the masks in {path.parent} were converted with) numbers them "
            f"{', '.join(_numbered(info))}. Training keeps the masks' numbering: drop the "
            f"other order, or renumber on purpose with python utils/generate_gt_segmentation.py "
            f"-p {root} -j ... --classes ... (or delete {path} to convert afresh)")


def _numbered(info: ClassInfo) -> list[str]:
    return [f"{index}={name}" for index, name in enumerate(info.names)]
