#!/usr/bin/env python
"""Where a training step of the book's model spends its time, by TensorFlow op type.

    python benchmarks/profile_ops.py [--height 192 --width 256 --batch 4 --steps 4]

Traces a few `model.fit` steps (after warm-up) with `tf.profiler` and sums the op events of
TensorFlow's compute threads by op type (executor bookkeeping left out); prints each type's
share and the share of the head's two transposed convolutions (forward and backward).
"""

import argparse
import collections
import glob
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--height", type=int, default=192)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--policy", default="mixed_bfloat16")
    p.add_argument("--top-layers", type=int, default=15, help="layers to list by time")
    p.add_argument("--model", choices=("book", "quick"), default="book",
                   help="book: the book's FCN (n=6, 3 levels); quick: the quick preset's "
                   "fcn4s + ASPP on ResNet11v2 at --downsample 2 (the main job's model)")
    args = p.parse_args()
    import keras
    import numpy as np
    import tensorflow as tf

    from fcn_keras.losses import SegmentationLoss
    from fcn_keras.models import build_model

    keras.mixed_precision.set_global_policy(args.policy)
    if args.model == "quick":
        model, _ = build_model("fcn4s", 4, n=1, pyramid_filters=128, context="aspp",
                               pyramid_blocks=2, bn_momentum=0.9, downsample=2)
    else:
        model, _ = build_model("fcn", 4, n=6, layers_=3, head_filters=256, pyramid_filters=512)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SegmentationLoss(4))
    rng = np.random.default_rng(0)
    x = rng.random((args.batch, args.height, args.width, 3), np.float32) * 255
    y = rng.integers(0, 4, (args.batch, args.height, args.width, 1)).astype("int32")
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)
    logdir = tempfile.mkdtemp(prefix="fcn-profile-")
    tf.profiler.experimental.start(logdir)
    model.fit(data, steps_per_epoch=args.steps, epochs=1, verbose=0)
    tf.profiler.experimental.stop()

    by_type, examples, head = collections.Counter(), {}, 0.0
    by_layer = collections.Counter()
    for name, ms in op_events(logdir):
        kind = name.rsplit(":", 1)[-1]
        by_type[kind] += ms
        by_layer[layer_of(name)] += ms
        examples.setdefault(kind, name)
        head += ms if "tconv_up_x" in name else 0.0
    total = sum(by_type.values())
    print(f"op time {total:.0f} ms over {args.steps} steps ({args.height}x{args.width}, "
          f"batch {args.batch}, {args.policy}); head transposed convs: {100 * head / total:.1f}%")
    for kind, ms in by_type.most_common(20):
        print(f"{kind[:36]:36s} {ms:9.1f} ms {100 * ms / total:5.1f}%  {examples[kind][:60]}")
    print("by layer (forward and backward together):")
    for layer, ms in by_layer.most_common(args.top_layers):
        print(f"{layer[:60]:60s} {ms:9.1f} ms {100 * ms / total:5.1f}%")


def op_events(logdir: str):
    """(op event name, milliseconds) of every op event on TensorFlow's compute threads in the
    `tf.profiler` trace under `logdir` (the executor's enclosing bookkeeping events left out)."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2
    space = xplane_pb2.XSpace()
    path = sorted(glob.glob(f"{logdir}/**/*.xplane.pb", recursive=True))[-1]
    space.ParseFromString(Path(path).read_bytes())
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_Compute"):
                continue
            for event in line.events:
                meta = plane.event_metadata.get(event.metadata_id)
                name = meta.name if meta else "?"
                if name != "ExecutorState::Process":   # encloses the ops: bookkeeping
                    yield name, event.duration_ps / 1e9


def layer_of(name: str) -> str:
    """The layer an op event belongs to: its scope path without the gradient tape and the
    op itself (`.../gradient_tape/model/block1_conv/Conv2D:Op` -> `model/block1_conv`)."""
    parts = [p for p in name.rsplit(":", 1)[0].split("/")
             if p not in ("StatefulPartitionedCall", "gradient_tape")]
    return "/".join(parts[:-1]) or parts[0]


if __name__ == "__main__":
    main()
