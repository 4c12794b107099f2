#!/usr/bin/env python
"""Facts about a dataset folder that a script needs before training: a training crop suited to
its image size, and an image of its test split to segment as an example.

    python utils/dataset_info.py data/drinks --crop          # 128x160
    python utils/dataset_info.py data/drinks --crop --downsample 2   # 224x320 (whole images)
    python utils/dataset_info.py data/drinks --test-image    # data/drinks/0000161.jpg

`--crop`: half the median image side (so a crop holds whole objects with context around them),
at least the network stride (32) and at most 256 on a side (large photos are cut into 256x256
pieces, which train faster per pixel than whole images), in multiples of 32 with the image's
aspect ratio; with `--downsample F` (the model's), the whole image, at most 256 F a side
(`fcn_keras.crop.suggest_crop`). Reads only the image headers. Errors: one line naming the
folder, exit status 2.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fcn_keras.crop import image_sizes, suggest_crop  # noqa: E402
from fcn_keras.errors import FCNError  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data_path")
    parser.add_argument("--data-format", default="auto")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--crop", action="store_true", help="print HEIGHTxWIDTH")
    parser.add_argument("--downsample", type=int, default=1,
                        help="the model's --downsample (the crop is then the whole image)")
    what.add_argument("--test-image", action="store_true",
                      help="print the path of the first image of test (else val)")
    args = parser.parse_args(argv)
    from fcn_keras.datasets import load_dataset
    try:
        dataset = load_dataset(args.data_path, args.data_format)
        if args.crop:
            height, width = suggest_crop(image_sizes(dataset.split("train")),
                                         args.downsample)
            print(f"{height}x{width}")
        else:
            split = "test" if dataset.splits.get("test") else "val"
            print(dataset.split(split)[0].image)
    except FCNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
