#!/usr/bin/env python
"""Draw a synthetic "drinks" dataset in the layout of the book's chapter 12.

Water bottles, soda cans and juice cans on a table among look-alike clutter, annotated with the
polygon of each drink's visible part (how the pictures are made: `utils/sample_dataset/`).

Output (the book's layout): `<stem>.jpg` images, `segmentation_train.json` and
`segmentation_test.json` in VIA 2.x export format (keys are filename + file size, region
attribute ``{"name": "1" | "2" | "3"}``), and `classes.json`.

    python utils/make_sample_dataset.py --out data/drinks --train 160 --test 40 \\
        --width 320 --height 240 --seed 0

The output depends only on the arguments: image i is drawn from its own generator seeded with
(seed, i).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
for folder in (HERE, HERE.parent):   # sample_dataset/ beside this file, and fcn_keras
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from sample_dataset import generate_dataset  # noqa: E402


def get_args_parser():
    parser = argparse.ArgumentParser(
        description="Draw a synthetic 'drinks' dataset (water bottle, soda can, juice can) in "
                    "the layout of Advanced Deep Learning with Keras, ch. 12.")
    parser.add_argument("--out", default="data/drinks", help="output folder")
    parser.add_argument("--train", type=int, default=160, help="number of training images")
    parser.add_argument("--test", type=int, default=40, help="number of test images")
    parser.add_argument("--width", type=int, default=320, help="image width (the book: 640)")
    parser.add_argument("--height", type=int, default=240, help="image height (the book: 480)")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument("--quality", type=int, default=90, help="JPEG quality")
    return parser


def main(argv=None):
    args = get_args_parser().parse_args(argv)
    if args.train < 0 or args.test < 0:
        sys.exit("error: --train and --test must not be negative")
    if args.width < 32 or args.height < 32:
        sys.exit("error: --width and --height must be at least 32")
    if not 1 <= args.quality <= 100:
        sys.exit("error: --quality must be between 1 and 100")
    splits = generate_dataset(args.out, args.train, args.test, args.width, args.height,
                              args.seed, args.quality, progress=True)
    n_regions = sum(len(e["regions"]) for via in splits.values() for e in via.values())
    print(f"wrote {args.train + args.test} images with {n_regions} regions to {args.out}")


if __name__ == "__main__":
    main()
