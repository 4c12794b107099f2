#!/usr/bin/env python
"""Size, CPU latency and agreement of every export of the shipped drinks model.

    python benchmarks/exports.py --out benchmarks/exports.json      # ~3 min on the 2-core CPU

Exports `Segmenter.from_preset("quick")` (`--export`'s formats) to a temporary folder, then for
each file: its size, the median single-image latency at 240x320 (10 runs after 2 warm-ups) and,
over the 40 test images of `data/drinks`, the share of pixels whose class agrees with the Keras
model and the test mIoU against the ground truth (so int8's mIoU change is measured, not
guessed). Masks come from `data/drinks/masks` (run `utils/generate_gt_segmentation.py` first).
"""

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="benchmarks/exports.json")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    import numpy as np
    from PIL import Image

    from fcn_keras import Segmenter
    from fcn_keras.config import parse_args
    from fcn_keras.export import export_model, float32_model, load_export
    from fcn_keras.metrics import ConfusionMatrix

    segmenter = Segmenter.from_preset("quick")
    model = float32_model(segmenter.model)   # exports are float32 (bfloat16 where native)
    data = ROOT / "data" / "drinks"
    stems = [f"{i:07d}" for i in range(161, 201)]
    images = [np.asarray(Image.open(data / f"{s}.jpg").convert("RGB"), np.float32) / 255.0
              for s in stems]
    truths = [np.asarray(Image.open(data / "masks" / f"{s}.png")) for s in stems]
    results = {}
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        export_model(model, directory, segmenter.classes, parse_args(["--summary"]),
                     tflite_size=(240, 320))
        reference = [model(x[None], training=False).numpy()[0].argmax(-1)
                     for x in images]
        for name in ("model.keras", "saved_model", "model.tflite", "model-int8.tflite"):
            path = directory / name
            run = load_export(path)
            size = sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) \
                if path.is_dir() else path.stat().st_size
            agree = total = 0
            matrix = ConfusionMatrix(4)
            for x, truth, ref in zip(images, truths, reference):
                mask = np.asarray(run(x[None]))[0].argmax(-1)
                agree += int((mask == ref).sum())
                total += mask.size
                matrix.update(truth, mask)
            for _ in range(2):
                run(images[0][None])
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                run(images[0][None])
                times.append(time.perf_counter() - start)
            results[name] = {"mb": round(size / 1e6, 2),
                             "latency_ms_240x320": round(1000 * statistics.median(times), 1),
                             "latency_spread_ms": round(1000 * (max(times) - min(times)), 1),
                             "agreement": round(agree / total, 6),
                             "test_miou": round(matrix.compute()["mean_iou"], 4)}
            print(name, results[name], flush=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
