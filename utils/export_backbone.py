#!/usr/bin/env python
"""Write a trained model's backbone as a `--backbone-weights` file (float16, a few MB), to start
another dataset's training from it instead of from scratch.

    python utils/export_backbone.py weights/fcn4s-ResNet20v2-3layer-camvid-best-iou.weights.h5 \\
        weights/backbone-ResNet20v2-camvid.weights.h5
    python fcn.py --train --n 2 --backbone-weights weights/backbone-ResNet20v2-camvid.weights.h5 ...

The model is rebuilt from the settings file beside the weights (`<stem>.model.json`); the new
training must use the same backbone options (`--n`, `--layers`, `--pyramid-filters`,
`--pyramid-blocks`). Errors: one line, exit status 2.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", help="a .weights.h5 file trained by fcn-keras")
    parser.add_argument("target", help="the backbone weights file to write (.weights.h5)")
    args = parser.parse_args(argv)
    from fcn_keras.api import Segmenter
    from fcn_keras.errors import ConfigError, DataError
    from fcn_keras.export import export_backbone
    try:
        model = Segmenter.from_weights(args.weights).model
        export_backbone(model, args.target)
    except (ConfigError, DataError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Backbone of {args.weights} written to {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
