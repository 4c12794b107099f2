#!/usr/bin/env python
"""Recompute a trained model's batch-norm statistics over its training images (precise BN).

    python utils/recalibrate_bn.py --out runs/x-recal.weights.h5 \\
        --restore-weights runs/x-best-iou.weights.h5 --data-path data/camvid [fcn.py options]

What `fcn.py --train --recalibrate-bn` does at the end of training, for weights that exist:
the statistics are recomputed over the training split's whole images, as evaluation feeds them
(`fcn_keras/recalibrate.py` says why), val mIoU is scored before and after, and the new weights
are written to `--out` (atomically; it may be the input file) only if val did not fall, with
their classes and settings beside them. The record (images, seconds, val before and after)
goes to `<out stem>-recalibrate-bn.json`. The other options are fcn.py's (the model settings
come from the files beside the weights, or `--preset`). Errors: one line, exit status 2.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, type=Path,
                        help="the .weights.h5 file to write (may be the input file)")
    args, rest = parser.parse_known_args(argv)
    from fcn_keras.errors import FCNError
    try:
        return _recalibrate(args.out, rest)
    except FCNError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _recalibrate(out: Path, fcn_options: list[str]) -> int:
    from fcn_keras.app import FCN
    from fcn_keras.config import parse_args, resolve_weights_path
    from fcn_keras.errors import ConfigError
    from fcn_keras.io_utils import atomic_write_bytes
    from fcn_keras.recalibrate import describe, recalibrate_and_save, training_images
    from fcn_keras.sidecar import beside

    if not out.name.endswith(".weights.h5"):
        raise ConfigError(f"--out {out}: the name must end in .weights.h5")
    config = parse_args(["--evaluate", "--tta", "none", *fcn_options])
    if not config.restore_weights:
        raise ConfigError("--restore-weights: the weights to recalibrate are needed")
    source = resolve_weights_path(config)
    app = FCN(config)
    app.restore_weights()
    record = recalibrate_and_save(app.model, out, training_images(app.dataset),
                                  app.generator("val", training=False).dataset(), app.classes,
                                  config.batch_size, config.channels,
                                  note={"source": str(source)},
                                  show_progress=config.verbose > 0)
    if record["kept"]:
        for suffix in (".classes.json", ".model.json"):
            companion = beside(source, suffix)
            if companion.is_file() and companion.resolve() != beside(out, suffix).resolve():
                atomic_write_bytes(beside(out, suffix), companion.read_bytes())
    print(describe(record) + (f"; written to {out}" if record["kept"] else
                              f"; {out} not written"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
