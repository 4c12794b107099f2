#!/usr/bin/env python
"""Convert annotations (VIA, COCO, LabelMe, CVAT XML, CVAT/VOC mask folders) into index masks.

Example, the book's drinks dataset (train and test in one call, so they share one class map):

    python utils/generate_gt_segmentation.py -p data/drinks \\
        -j segmentation_train.json -j segmentation_test.json

writes data/drinks/masks/<image stem>.png, classes.json, segmentation_train.txt and
segmentation_test.txt. Other formats: `--format auto|via|coco|labelme|cvat|cvat-mask` (auto
reads each file's format from its contents), e.g. `-p images -j instances_train.json`,
`-j labelme_folder/`, `-p images -j annotations.xml`, `-j export_folder/` (labelmap.txt).
Errors in the annotations are all listed at once, exit status 2.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fcn_keras.annotations import FORMATS  # noqa: E402
from fcn_keras.errors import FCNError  # noqa: E402

CLASS_RULE = """\
class indices: background is 0. With --classes a,b,c (or a classes.json, labelmap.txt or
one-name-a-line file): a=1, b=2, c=3, and an integer name that is not listed is the index
itself (the book's "1", "2" with --classes water,soda). Else the list the files declare, in
their order: COCO categories sorted by id (ids 1, 3, 7 -> 1, 2, 3), CVAT labels in project
order, a mask folder's labelmap.txt. Else (VIA, LabelMe) the names used in all the given
files together: if every name is an integer ("1", "2", as in the book) the index is that
integer, else the names sorted (case-sensitive) get 1..K. A region named "background" or
"_background_" paints 0, LabelMe's "__ignore__" paints 255 (ignored in training).
A region's class is read from the region attribute --attribute KEY, or else the first of
Name, name, class, label, type, category (case-insensitive); its value may be a string, a
number, or a checkbox dict with exactly one option ticked.

pixels: each format as its own tool draws it: COCO polygons and RLE, CVAT polygons and boxes
exactly as the COCO API (pycocotools) rasterises them; LabelMe shapes as labelme2voc does (PIL,
outline included); CVAT masks and mask folders as stored. VIA: pixel (row r, column c) is the
point (x=c, y=r) of VIA's coordinates. Polygons take
the pixels inside or on their boundary (skimage.draw.polygon's rule), rectangles the pixels
x <= c < x+width and y <= r < y+height, circles and ellipses those strictly inside (ellipse
theta as VIA draws it, clockwise on screen). Parts outside the image are clipped.
Overlaps: larger regions are painted first (--draw-order area), or in file order (file).
Lines, polylines and points have no area and are skipped with a warning."""


def get_args_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Convert annotations (VIA 1.x/2.x/3.x, COCO, LabelMe, CVAT for images 1.1, "
                    "CVAT/VOC segmentation mask folders) into index-PNG masks (one <image "
                    "stem>.png per image, classes.json, <input stem>.txt).",
        epilog=CLASS_RULE, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-j", "--json", action="extend", nargs="+", default=None,
                        metavar="FILE",
                        help="annotation file(s) or folder(s) (LabelMe JSON folder, mask "
                             "folder), looked up in --data-path when not found as given; "
                             "repeat or list several (default: segmentation_train.json for "
                             "VIA, else the data path itself)")
    parser.add_argument("-p", "--data-path", default=None,
                        help="folder of the images, which image names in the files are "
                             "relative to (default: data/drinks for VIA; for the other formats "
                             "the folder of the first annotation file, or that folder itself)")
    parser.add_argument("--format", default="auto", choices=("auto",) + FORMATS,
                        help="annotation format (default: from each file's contents)")
    parser.add_argument("--save-filename", default=None, metavar="NPY",
                        help="also write the book's pickled {filename: one-hot HxWxC uint8} "
                             ".npy (relative paths are inside --data-path)")
    parser.add_argument("--show", action="store_true",
                        help="also write <output-dir>/show/<stem>.png: image | colour mask")
    parser.add_argument("--classes", default=None,
                        help="class names in index order, comma-separated (background is 0 and "
                             "implicit), or a classes.json, labelmap.txt or one-name-a-line "
                             ".txt file (default: <data-path>/classes.json when there is one)")
    parser.add_argument("--attribute", default=None, metavar="KEY",
                        help="region attribute holding the class name (default: auto-detected)")
    parser.add_argument("--output-dir", default=None,
                        help="where masks go (default: <data-path>/masks)")
    parser.add_argument("--skip-missing", action="store_true",
                        help="skip images that are missing or unreadable instead of failing")
    parser.add_argument("--draw-order", choices=("area", "file"), default="area",
                        help="overlaps: 'area' paints larger regions first so small objects "
                             "stay visible; 'file' keeps the file's order (CVAT: z_order), "
                             "later on top")
    parser.add_argument("-q", "--quiet", action="store_true",
                        help="no progress bar, warnings or summary")
    return parser


def _classes_argument(value):
    """A classes.json, labelmap.txt or names .txt file is read; anything else is a
    comma-separated list of names."""
    if value and value.lower().endswith((".json", ".txt")):
        from fcn_keras.annotations.classes import read_class_file
        return read_class_file(value)
    return value


def _inputs_and_data_path(args) -> tuple[list[str], str]:
    """The book's defaults for VIA; for the other formats the data path defaults to where the
    annotations are (a LabelMe or mask folder, or the folder of the first file)."""
    book = Path(args.data_path or "data/drinks") / "segmentation_train.json"
    if args.format == "via" or (not args.json and (args.data_path is None or book.is_file())):
        return args.json or ["segmentation_train.json"], args.data_path or "data/drinks"
    if args.data_path is None:
        first = Path(args.json[0])
        return args.json, str(first if first.is_dir() else first.parent)
    return args.json or [args.data_path], args.data_path


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    from fcn_keras.annotations.convert import convert_annotations

    try:
        inputs, data_path = _inputs_and_data_path(args)
        classes = _classes_argument(args.classes)
        beside = Path(data_path) / "classes.json"
        if classes is None and beside.is_file() and args.output_dir != data_path:
            # The dataset's own class names and colours (as `fcn.py` uses them)
            classes = _classes_argument(str(beside))
        result = convert_annotations(
            inputs, data_path, output_dir=args.output_dir, classes=classes,
            attribute=args.attribute, skip_missing=args.skip_missing,
            draw_order=args.draw_order, save_filename=args.save_filename, show=args.show,
            progress=not args.quiet and sys.stderr.isatty(), fmt=args.format)
    except FCNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    if not args.quiet:
        for warning in result.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        counts = ", ".join(f"{stem}: {len(stems)}" for stem, stems in result.stems.items())
        names = ", ".join(result.class_info.names)
        skipped = f", skipped {result.skipped_missing} missing" if result.skipped_missing else ""
        print(f"converted {len(result.mask_paths)} image(s) ({counts}{skipped}) into "
              f"{result.output_dir}; {result.class_info.n_classes} classes: {names}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
