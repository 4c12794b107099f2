#!/usr/bin/env python
"""Store a `.weights.h5` file's float32 arrays as float16 (half the size) for shipping.

    python utils/compact_weights.py runs/x-best-iou.weights.h5 weights/x-best-iou.weights.h5

Keras casts the arrays back to float32 when it loads them; output probabilities move by about
1e-3. The shipped weights in `weights/` are stored this way (their reports were made from the
compacted files). Errors: one line, exit status 2.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source")
    parser.add_argument("target")
    args = parser.parse_args(argv)
    from fcn_keras.export import compact_weights
    try:
        compact_weights(args.source, args.target)
    except OSError as exc:
        print(f"error: {args.source}: not a readable weights file ({exc})", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
