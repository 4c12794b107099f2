#!/usr/bin/env python
"""Training-step time of the `quick` preset's model in float32 and mixed bfloat16, per size.

    python benchmarks/step_time.py --out benchmarks/step_time.json   # ~3 min on 2 cores

Why: bfloat16 pays only where the CPU computes it natively (AVX512-BF16 / AMX); elsewhere it is
emulated. This measures the ratio on the machine at hand (with its CPU flags and the 2048^3
GEMM rate of both types), so the presets' choice (mixed precision by hardware) can be checked.
Batches of 8 random images, 2 warm-up steps, then the mean of 3 timed `model.fit` steps.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def step_seconds(policy: str, height: int, width: int, downsample: int, n: int) -> float:
    import keras
    import numpy as np
    import tensorflow as tf

    from fcn_keras.losses import SegmentationLoss
    from fcn_keras.models import build_model

    keras.mixed_precision.set_global_policy(policy)
    model, _ = build_model("fcn4s", n_classes=4, n=n, pyramid_filters=128, context="aspp",
                           pyramid_blocks=2, bn_momentum=0.9, downsample=downsample)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=SegmentationLoss(4))
    rng = np.random.default_rng(0)
    x = rng.random((8, height, width, 3), np.float32)
    y = rng.integers(0, 4, (8, height, width, 1)).astype("int32")
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=3, epochs=1, verbose=0)
    return (time.perf_counter() - start) / 3


def gemm_gflops(dtype: str) -> float:
    import tensorflow as tf
    a = tf.cast(tf.random.normal((2048, 2048)), dtype)
    matmul = tf.function(lambda m: tf.matmul(m, m))
    matmul(a).numpy()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        matmul(a).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * 2048 ** 3 / best / 1e9


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/step_time.json")
    args = parser.parse_args()
    from fcn_keras.runtime import cpu_flags
    flags = cpu_flags()
    result = {"cpu_bf16": sorted(flags & {"avx512_bf16", "amx_bf16", "avx512f", "avx2"}),
              "gemm_gflops": {d: round(gemm_gflops(d), 1) for d in ("float32", "bfloat16")},
              "steps": []}
    for height, width, downsample, n in ((128, 160, 1, 2), (128, 160, 2, 2), (224, 320, 2, 1)):
        row = {"size": f"{height}x{width}", "downsample": downsample, "n": n}
        for policy in ("float32", "mixed_bfloat16"):
            row[f"{policy}_s"] = round(step_seconds(policy, height, width, downsample, n), 3)
        row["bf16_over_f32"] = round(row["mixed_bfloat16_s"] / row["float32_s"], 2)
        result["steps"].append(row)
        print(row, flush=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["gemm_gflops"]), f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
