#!/usr/bin/env python
"""Why evaluation passes run at one of two speeds: the tuned evaluation at 352x480 (the book's
model, batch norms folded, 24 images a pass) under five conditions, each in a fresh process.

    python benchmarks/eval_modes.py --out benchmarks/eval_modes.json   # ~8 min on 2 cores

- `default`: as `fcn.py --evaluate` and `run.py` run it: `tf.data` batches decoded ahead of
  the model, 256 MB at a time (`fcn_keras.evaluate.score_split`; the whole split here);
- `streaming`: each batch handed to the model as it comes (`tf.data` decoding beside the
  model: the default until round 4);
- `malloc-fixed`: glibc's dynamic mmap / trim thresholds pinned (MALLOC_MMAP_THRESHOLD_,
  MALLOC_TRIM_THRESHOLD_, MALLOC_TOP_PAD_), so large buffers are neither handed back to the
  kernel nor faulted in again between calls: if the slow passes were page faults, they go;
- `in-memory`: the split decoded once before the timed passes, which then run the model and
  the metrics alone (no input-pipeline thread awake beside the model's);
- `one-thread`: TensorFlow's thread pools at one thread each (nothing to wait for in a
  parallel region).

Each prints every pass's images/s; a pass in the slow mode shows as a rate well below the
process's fastest.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import BOOK_MODEL, Task, make_data, spawn  # noqa: E402

MALLOC = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2 ** 20), "MALLOC_TRIM_THRESHOLD_": str(2 ** 40),
          "MALLOC_TOP_PAD_": str(512 * 2 ** 20)}
CONDITIONS = {"default": ({}, {}, "0,0"), "streaming": ({}, {"decode_ahead": 0}, "0,0"),
              "malloc-fixed": (MALLOC, {"decode_ahead": 0}, "0,0"),
              "in-memory": ({}, {"in_memory": True}, "0,0"),
              "one-thread": ({}, {"decode_ahead": 0}, "1,1")}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/eval_modes.json"))
    parser.add_argument("--repeats", type=int, default=8, help="timed passes per condition")
    parser.add_argument("--workdir", type=Path, help="keep the generated data here")
    parser.add_argument("--conditions", default=",".join(CONDITIONS),
                        help="comma-separated, among: " + ", ".join(CONDITIONS))
    args = parser.parse_args()
    root = args.workdir or Path(tempfile.mkdtemp(prefix="fcn-eval-modes-"))
    data = make_data(root, quick=False, log=print)
    results = {}
    for name in args.conditions.split(","):
        env, options, threads = CONDITIONS[name]
        task = Task("eval", "tuned", 352, 480, 2, data=str(data["eval_352x480"]),
                    model=dict(BOOK_MODEL), key=name,
                    options={"images": 24, "repeats": args.repeats, **options})
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            result = spawn([task], threads, print)[name]
        finally:
            for k, v in saved.items():
                if v is None:
                    del os.environ[k]
                else:
                    os.environ[k] = v
        rates = result["img_s_each"]
        results[name] = {"env": env, "threads": threads, "task": asdict(task),
                         "img_s_each": [round(r, 3) for r in rates],
                         "median": round(statistics.median(rates), 3),
                         "fastest": round(max(rates), 3), "slowest": round(min(rates), 3),
                         "passes_below_80pct_of_fastest": sum(r < 0.8 * max(rates)
                                                               for r in rates)}
        print(name, results[name]["img_s_each"], flush=True)
    out = {"command": "python " + " ".join(sys.argv), "conditions": results}
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
