"""COCO instances JSON (``instances_*.json``, and what CVAT, Label Studio, Roboflow or VIA's
"export as COCO" write) -> records.

``{"images": [{"id", "file_name", "width", "height"}], "categories": [{"id", "name"}],
"annotations": [{"image_id", "category_id", "segmentation", "iscrowd"}]}``. A segmentation is a
list of polygons (one object may have several parts: they are united, as the COCO API does), an
uncompressed RLE (``counts`` a list) or a compressed one (a string); both RLEs are column-major
over the whole image and must have its size. ``iscrowd`` objects (usually RLE) are painted with
their category like the others: a crowd of people is people. Annotations without a
segmentation (detection-only files) are skipped with a warning.

Classes: the categories sorted by ``id`` get 1..K, so ids with gaps (1, 3, 7) still give
contiguous indices and the order does not depend on how the file lists them; ``--classes`` wins.
``file_name`` is relative to the data folder (``-p``, the images folder).
"""

from __future__ import annotations

from fcn_keras.annotations import rle
from fcn_keras.annotations.records import (
    AnnotatedImage,
    Annotations,
    Bad,
    Region,
    describe,
    filename_problem,
    numbers,
)


def read(source, document) -> Annotations:
    found = Annotations()
    name = source.path.name
    if not isinstance(document, dict) or not isinstance(document.get("images"), list) or \
            not isinstance(document.get("annotations"), list):
        found.problems.append(f"{name}: not a COCO instances file (expected an object with "
                              "'images' and 'annotations' lists)")
        return found
    categories = _categories(document.get("categories"), name, found)
    images = _images(document["images"], name, found.problems)
    skipped = 0
    for position, annotation in enumerate(document["annotations"]):
        try:
            skipped += _add_annotation(annotation, position, images, categories)
        except Bad as exc:
            found.problems.append(f"{name}: {exc}")
    found.images = list(images.values())
    if skipped:
        found.warnings.append(f"{name}: {skipped} annotation(s) without a segmentation "
                              "(boxes only) skipped")
    return found


def _categories(raw, name: str, found: Annotations) -> dict[int, str]:
    """id -> name; the declared class order is by id."""
    if not isinstance(raw, list):
        found.problems.append(f"{name}: 'categories' must be a list of {{'id', 'name'}}, got "
                              f"{describe(raw)}")
        return {}
    categories: dict[int, str] = {}
    for position, category in enumerate(raw):
        cid = category.get("id") if isinstance(category, dict) else None
        label = category.get("name") if isinstance(category, dict) else None
        if not _is_int(cid) or not isinstance(label, str) or not label.strip():
            found.problems.append(f"{name}: category {position} needs an integer 'id' and a "
                                  f"'name', got {describe(category)}")
        elif cid in categories:
            found.problems.append(f"{name}: category id {cid} is given twice")
        else:
            categories[cid] = label.strip()
    by_name: dict[str, int] = {}
    for cid in sorted(categories):
        if categories[cid] in by_name:
            found.problems.append(f"{name}: categories {by_name[categories[cid]]} and {cid} "
                                  f"are both named '{categories[cid]}'")
        by_name.setdefault(categories[cid], cid)
    found.declared = [(categories[cid], None) for cid in sorted(categories)]
    return categories


def _images(raw: list, name: str, problems: list[str]) -> dict[int, AnnotatedImage]:
    images: dict[int, AnnotatedImage] = {}
    for position, entry in enumerate(raw):
        iid = entry.get("id") if isinstance(entry, dict) else None
        filename = entry.get("file_name") if isinstance(entry, dict) else None
        if not _is_int(iid) or not isinstance(filename, str):
            problems.append(f"{name}: image {position} needs an integer 'id' and a "
                            f"'file_name', got {describe(entry)}")
            continue
        if iid in images:
            problems.append(f"{name}: image id {iid} is given twice")
            continue
        bad_name = filename_problem(filename)
        if bad_name:
            problems.append(f"{name}: {filename}: {bad_name}")
            continue
        height, width = entry.get("height"), entry.get("width")
        size = (height, width) if _is_int(height) and _is_int(width) else None
        images[iid] = AnnotatedImage(filename, [], source=name, size=size)
    return images


def _add_annotation(annotation, position: int, images, categories) -> int:
    """Append one object to its image; 1 when it has no segmentation (skipped), else 0."""
    if not isinstance(annotation, dict):
        raise Bad(f"annotation {position} must be an object, got {describe(annotation)}")
    label = f"annotation {annotation.get('id', position)}"
    iid = annotation.get("image_id")
    image = images.get(iid) if _is_int(iid) else None
    if image is None:
        raise Bad(f"{label}: image_id {annotation.get('image_id')!r} is not in 'images' (or "
                  "that image entry is broken)")
    where = f"{image.filename}: {label}"
    cid = annotation.get("category_id")
    if not _is_int(cid) or cid not in categories:
        raise Bad(f"{where}: category_id {cid!r} is not in 'categories'")
    segmentation = annotation.get("segmentation")
    if segmentation in (None, [], {}):
        return 1
    try:
        shape, params = _segmentation(segmentation, image.size)
    except (Bad, rle.RLEError) as exc:
        raise Bad(f"{where}: {exc}") from None
    crowd = annotation.get("iscrowd", 0)
    image.regions.append(Region(shape, params, categories[cid], len(image.regions),
                                {"id": annotation.get("id"), "iscrowd": crowd}))
    return 0


def _segmentation(segmentation, size) -> tuple[str, dict]:
    if isinstance(segmentation, list):
        parts = []
        for index, part in enumerate(segmentation):
            xy = numbers(part, f"segmentation[{index}]")
            if len(xy) % 2:
                raise Bad(f"polygon {index} has an odd number of coordinates ({len(xy)})")
            parts.append(xy)
        return "coco_polygon", {"polygons": parts}
    if not isinstance(segmentation, dict):
        raise Bad(f"'segmentation' must be a list of polygons or an RLE object, got "
                  f"{describe(segmentation)}")
    return "rle", _rle(segmentation, size)


def _rle(segmentation: dict, size) -> dict:
    rle_size, counts = segmentation.get("size"), segmentation.get("counts")
    if not isinstance(rle_size, list) or len(rle_size) != 2 or not all(map(_is_int, rle_size)) \
            or min(rle_size) < 1:
        raise Bad(f"RLE 'size' must be [height, width], got {describe(rle_size)}")
    height, width = rle_size
    if size is not None and tuple(rle_size) != tuple(size):
        raise Bad(f"RLE size {height}x{width} (height x width) differs from the image entry's "
                  f"{size[0]}x{size[1]}")
    text = None
    if isinstance(counts, str):
        text, counts = counts, rle.string_to_counts(counts)
    elif isinstance(counts, list) and all(_is_int(c) and c >= 0 for c in counts):
        counts = list(counts)
    else:
        raise Bad(f"RLE 'counts' must be a list of non-negative integers or a compressed "
                  f"string, got {describe(counts)}")
    rle.check_counts(counts, height, width)
    return {"counts": counts, "text": text, "size": (height, width)}


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
