#!/usr/bin/env python
"""Draw loss, validation mIoU and pixel-accuracy curves from a training history.

    python utils/plot_history.py weights/ResNet56v2-3layer-drinks-best-iou-history.json \
        --out history.png
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fcn_keras.visualize import plot_history  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("history", help="the <weights>-history.json written by training")
    parser.add_argument("--out", help="PNG to write (default: beside the history file)")
    args = parser.parse_args(argv)
    path = Path(args.history)
    try:
        records = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        print(f"error: {path}: not a readable history JSON ({exc})", file=sys.stderr)
        return 2
    if not isinstance(records, list) or not records:
        print(f"error: {path}: no epochs recorded", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else path.with_suffix(".png")
    plot_history(records, out)
    print(f"Wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
