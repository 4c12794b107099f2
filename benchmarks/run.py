#!/usr/bin/env python
"""Speed and memory of fcn-keras against the book's own code, on this machine.

    python benchmarks/run.py --out benchmarks/results.json     # full run, ~15-25 min on 2 cores
    python benchmarks/run.py --quick --out /tmp/quick.json     # smoke run (a minute, tiny model)

Measures, for the book's model (ResNet56v2, `--layers 3`, 4 classes) at 192x256 batch 4 and
352x480 batch 2: training images/s and achieved GFLOP/s after warm-up, evaluation images/s,
single-image latency at 480x640, peak RSS of a training process, the VIA converter's time and
mask bytes per 480x640 image, how epoch time and memory grow with the dataset (N and 4N images)
and with the image size; each for the tuned configuration and, in the same run, a plain one
(float32, Keras' own layers, Python-fed batches like the book's `keras.utils.Sequence`).

Also: the roofs (a 2048^3 GEMM and 3x3 convolutions at the model's typical shapes, float32
and bfloat16) and every training / evaluation rate as a fraction of both; evaluation as the
median of repeated passes with its spread and the inference function's trace count; latency
with and without batch norm folded; training with `--remat`; the CamVid and quick presets'
models and the other `--arch` variants.

This script plans and reports; every measurement runs in a fresh process of
`benchmarks/worker.py`, so peak RSS is that measurement's alone and nothing is warm from an
earlier one. `--quick` instead runs all tasks of a configuration in one process, the
configurations' processes side by side, with a tiny model and a step or two: it checks the
plumbing and the JSON keys, its numbers are not measurements. FLOPs are counted analytically
(multiply-adds of every convolution x 2; a training step counts 3x the forward pass).

The JSON keeps every measurement's raw result (`raw`, each tagged with its run); with `--only`
the results of an existing `--out` file that were not rerun are kept, and the figures are
recomputed from the merged raw results (fractions of a roof only against the roof measured in
the same run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

# Reference figures for the book's own code (Atienza, chapter 12: its FCN on ResNet56v2, float32,
# batches from a keras.utils.Sequence) on this machine class (2-core Zen 4), given with the
# task, not measured here: training images/s at 192x256 batch 4 and
# 352x480 batch 2, seconds per evaluated image (0.27 / 0.66), peak RSS of training (4.6 / 7.3
# GiB), its VIA converter's ms per 480x640 image and the bytes of its .npy mask per image.
BOOK = {"train_img_s_192x256": 1.09, "train_img_s_352x480": 0.29,
        "eval_img_s_192x256": 1 / 0.27, "eval_img_s_352x480": 1 / 0.66,
        "peak_rss_mb_train_192x256": 4.6 * 1024, "peak_rss_mb_train_352x480": 7.3 * 1024,
        "converter_ms_per_img": 10.0, "mask_bytes_per_img": 1.17 * 2 ** 20}
# ours / book wanted: at least (speeds) or at most (memory, time, bytes)
TARGETS = {"train_img_s_192x256": (">=", 3.0), "train_img_s_352x480": (">=", 3.0),
           "eval_img_s_192x256": (">=", 2.5), "eval_img_s_352x480": (">=", 2.5),
           "peak_rss_mb_train_192x256": ("<=", 0.5), "peak_rss_mb_train_352x480": ("<=", 0.5),
           "converter_ms_per_img": ("<=", 0.5), "mask_bytes_per_img": ("<=", 1 / 50)}
# this CPU's quoted matrix-work peaks (GFLOP/s), the denominators of train_peak_fraction_*
PEAK_GFLOPS = {"float32": 450.0, "mixed_bfloat16": 770.0}
BOOK_MODEL = {"n": 6, "layers_": 3, "head_filters": 256, "pyramid_filters": 512}
QUICK_MODEL = {"n": 1, "layers_": 2, "head_filters": 8, "pyramid_filters": 16}
# the models people train (benchmarked at the training size of the book model's rows)
VARIANTS = {
    "camvid": {"arch": "fcn4s", "context": "aspp", "pyramid_blocks": 2, "n": 2, "layers_": 3,
               "pyramid_filters": 128},
    "quick": {"arch": "fcn4s", "context": "aspp", "pyramid_blocks": 2, "n": 1, "layers_": 3,
              "pyramid_filters": 128, "downsample": 2},
    "fcn8s": {"arch": "fcn8s", "n": 6, "layers_": 3, "pyramid_filters": 512},
    "fcn4s": {"arch": "fcn4s", "n": 6, "layers_": 3, "pyramid_filters": 512},
    "fcn32s": {"arch": "fcn32s", "n": 6, "layers_": 3, "pyramid_filters": 512},
}
QUICK_VARIANT = {"n": 1, "layers_": 3, "pyramid_filters": 16}
RESULT_TAG = "BENCH_RESULT "


@dataclass
class Setup:
    """One way of running the model: precision, layers, input feed, XLA, threads."""

    policy: str = "mixed_bfloat16"
    fast_layers: bool = True
    feed: str = "tfdata"            # "tfdata" (DataGenerator) or "python" (a keras PyDataset)
    jit: bool = False
    threads: tuple[int, int] = (0, 0)   # intra-op, inter-op; 0 = TensorFlow's choice


SETUPS = {
    "tuned": Setup(),
    "float32": Setup(policy="float32"),
    "plain": Setup(policy="float32", fast_layers=False, feed="python"),
    "xla": Setup(policy="float32", jit=True),
}


@dataclass
class Task:
    """One measurement for a worker process."""

    kind: str                       # train, pipeline, eval, latency, converter, flops, gemm, conv
    setup: str = "tuned"
    height: int = 192
    width: int = 256
    batch: int = 4
    warmup: int = 2
    steps: int = 6
    data: str = ""
    limit: int = 0                  # train: use only the first `limit` training images
    epochs: int = 0                 # train: time whole epochs instead of steps (scaling)
    model: dict = field(default_factory=lambda: dict(BOOK_MODEL))
    key: str = ""
    options: dict = field(default_factory=dict)   # fold_bn, remat, images, repeats


# -------------------------------------------------------------------------------------------
# Orchestrator side: data, one subprocess per measurement, the table and the JSON.

def spawn(tasks: list[Task], threads: str, log) -> dict:
    """Run `tasks` in a fresh Python process; their results by key."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    command = [sys.executable, str(Path(__file__).resolve().with_name("worker.py")),
               "--threads", threads, json.dumps([asdict(t) for t in tasks])]
    start = time.time()
    proc = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT)
    results = {}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            result = json.loads(line[len(RESULT_TAG):])
            results[result.pop("key")] = result
    log(f"  {', '.join(t.key for t in tasks)}: {time.time() - start:.0f} s")
    if proc.returncode != 0 or len(results) != len(tasks):
        raise RuntimeError(f"worker for {[t.key for t in tasks]} failed "
                           f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    return results


def make_data(root: Path, quick: bool, log) -> dict[str, Path]:
    """Synthetic VIA datasets: 480x640 for training and the converter, and small test sets at
    the evaluated sizes."""
    sys.path.insert(0, str(ROOT / "utils"))
    from make_sample_dataset import generate_dataset
    n_big = 10 if quick else 108   # >= 4N training images after the 10% val hold-out
    sets = {"big": (n_big, 2, 640, 480), "eval_192x256": (2, 2 if quick else 16, 256, 192),
            "eval_352x480": (2, 2 if quick else 8, 480, 352)}
    paths = {}
    for name, (n_train, n_test, width, height) in sets.items():
        start = time.time()
        paths[name] = root / name
        generate_dataset(paths[name], n_train, n_test, width, height, seed=1)
        log(f"  drew {name}: {n_train + n_test} images in {time.time() - start:.0f} s")
    return paths


def plan(quick: bool, data: dict[str, Path], model: dict, only: str = "",
         repeats: int = 3) -> list[list[Task]]:
    """The measurements, grouped by process (one per group; all of a setup with --quick);
    `repeats` timed passes per evaluation."""
    big = str(data["big"])
    steps = {"warmup": 1, "steps": 1} if quick else {"warmup": 3, "steps": 8}
    few = {"warmup": 1, "steps": 1} if quick else {"warmup": 2, "steps": 4}
    n = 2 if quick else 24
    tasks = [Task("gemm", key="gemm", steps=3),
             Task("conv", key="convroof", steps=1 if quick else 5),
             Task("converter", data=big, key="converter")]
    tasks += [Task("flops", height=h, width=w, model=dict(model), key=f"flops_{h}x{w}")
              for h, w in ((192, 256), (352, 480), (480, 640))]
    for setup in ("tuned", "plain") if quick else ("tuned", "float32", "plain", "xla"):
        for (h, w, b) in ((192, 256, 4), (352, 480, 2)):
            if setup == "xla" and h != 192:
                continue
            counts = few if setup in ("plain", "xla") else steps
            tasks.append(Task("train", setup, h, w, b, data=big, model=model,
                              key=f"{setup}_train_{h}x{w}", **counts))
    for (h, w, b) in ((192, 256, 4), (352, 480, 2)):   # training memory: --remat
        tasks.append(Task("train", "tuned", h, w, b, data=big, model=model, options={"remat": True},
                          key=f"remat_train_{h}x{w}", **steps))
    if not quick:
        tasks.append(Task("train", "tuned", 480, 640, 1, data=big, model=model,
                          key="tuned_train_480x640", **steps))
    for name, variant in VARIANTS.items():   # the models people train, at 192x256 batch 4
        variant = {**variant, **QUICK_VARIANT} if quick else variant
        tasks.append(Task("flops", height=192, width=256, model=variant,
                          key=f"flops_{name}_192x256"))
        tasks.append(Task("train", "tuned", 192, 256, 4, data=big, model=variant,
                          key=f"{name}_train_192x256", **few))
    for setup in ("tuned", "plain"):
        tasks.append(Task("pipeline", setup, 192, 256, 4, data=big, warmup=2,
                          steps=4 if quick else 20, key=f"{setup}_pipeline_192x256"))
    for setup in ("tuned", "plain") if quick else ("tuned", "float32", "plain"):
        for (h, w, b), images in zip(((192, 256, 4), (352, 480, 2)), (64, 24)):
            if setup == "plain":   # 2.5x slower: fewer images for the same time
                images //= 2
            options = {"images": 4 if quick else images, "repeats": 2 if quick else repeats}
            tasks.append(Task("eval", setup, h, w, b, data=str(data[f"eval_{h}x{w}"]),
                              model=model, options=options, key=f"{setup}_eval_{h}x{w}"))
        tasks.append(Task("latency", setup, 480, 640, 1, model=model, warmup=2,
                          steps=3 if quick else 7, key=f"{setup}_latency_480x640"))
    tasks.append(Task("eval", "tuned", 192, 256, 4, data=str(data["eval_192x256"]), model=model,
                      options={"images": 4 if quick else 64, "repeats": 2 if quick else repeats,
                               "fold_bn": False}, key="unfolded_eval_192x256"))
    tasks.append(Task("latency", "tuned", 480, 640, 1, model=model, warmup=2,
                      steps=3 if quick else 7, options={"fold_bn": False},
                      key="unfolded_latency_480x640"))
    for label, limit in (("N", n), ("4N", 4 * n)):
        tasks.append(Task("train", "tuned", 192, 256, 4, data=big, model=model, limit=limit,
                          epochs=1, warmup=2, key=f"scaling_{label}"))
    # The roofs again at the end: this VM has windows in which a core is half lost, and a
    # roof caught in one would inflate every fraction; `roof` takes the faster of the two.
    tasks += [Task("gemm", key="gemm_end", steps=3),
              Task("conv", key="convroof_end", steps=1 if quick else 5)]
    tasks = [t for t in tasks if not only or any(k in t.key for k in only.split(","))]
    if not quick:
        return [[t] for t in tasks]
    groups: dict[str, list[Task]] = {}
    for t in tasks:
        group = "misc" if t.kind not in ("train", "pipeline", "eval", "latency") else \
            t.setup + ("-feed" if t.epochs or t.kind == "pipeline" else "") + \
            ("-remat" if t.options.get("remat") else "")
        groups.setdefault(group, []).append(t)
    return list(groups.values())


ROOF_SUFFIXES = ("_of_gemm_roof", "_of_conv_roof", "_of_conv_train_roof")


def roof(raw: dict, result: dict, kind: str, dtype: str) -> float | None:
    """The GEMM or conv roof (GFLOP/s) measured in the same run as `result` (the faster of the
    measurements at the run's start and end), or None."""
    name = "gemm" if kind == "gemm" else "convroof"
    key = {"gemm": dtype, "conv": f"gflops_{dtype}", "conv_train": f"train_gflops_{dtype}"}[kind]
    rates = [measured[key] for measured in (raw.get(name), raw.get(f"{name}_end"))
             if measured and measured.get("run") == result.get("run") and key in measured]
    return max(rates) if rates else None


def add_fractions(out: dict, raw: dict, prefix: str, result: dict, gflops: float,
                  policy: str) -> None:
    """`<prefix>_of_gemm_roof`, `<prefix>_of_conv_roof` and `<prefix>_of_conv_train_roof`:
    achieved GFLOP/s over the roofs of the same run in the setup's compute precision (the
    last, a 3x3 conv's forward + backward, is the one a training step is held to)."""
    dtype = "bfloat16" if policy == "mixed_bfloat16" else "float32"
    for kind in ("gemm", "conv", "conv_train"):
        measured = roof(raw, result, kind, dtype)
        if measured:
            out[f"{prefix}_of_{kind}_roof"] = gflops / measured


def add_beside_fractions(out: dict, prefix: str, result: dict, gflop: float) -> None:
    """`<prefix>_of_gemm_roof_beside` (median, min, max over the passes): each evaluation
    pass's GFLOP/s over the GEMM roof measured just before it in the same process
    (`worker.run_eval`), beside `<prefix>_of_gemm_roof`, which holds the median pass to the
    run's roof: the drift of this VM between a pass and the run's roofs is left out."""
    roofs, rates = result.get("gemm_gflops_each"), result.get("img_s_each")
    if not roofs or not rates or len(roofs) != len(rates):
        return
    fractions = [gflop * rate / measured for rate, measured in zip(rates, roofs)]
    out[f"{prefix}_of_gemm_roof_beside"] = statistics.median(fractions)
    out[f"{prefix}_of_gemm_roof_beside_min"] = min(fractions)
    out[f"{prefix}_of_gemm_roof_beside_max"] = max(fractions)


def summarize(raw: dict, model: dict, quick: bool) -> dict:
    """The flat JSON: required keys, GFLOP/s, fractions of the roofs, ratios against the book
    and the plain setup (keys whose measurement was not run, see --only, are left out)."""
    out = {"quick": quick, "model": model, "machine": machine(),
           "gemm_gflops_now": raw.get("gemm"), "conv_gflops_now": raw.get("convroof"),
           "gemm_gflops_end": raw.get("gemm_end"), "conv_gflops_end": raw.get("convroof_end"),
           "setups": {k: asdict(v) for k, v in SETUPS.items()}, "variants": VARIANTS}
    for size in ("192x256", "352x480", "480x640"):
        if f"flops_{size}" in raw:
            out[f"forward_gflop_{size}"] = raw[f"flops_{size}"]["gflop"]
            out["tconv_flop_share"] = raw[f"flops_{size}"]["tconv_share"]
    for setup in ("tuned", "float32", "plain", "xla", "remat"):
        prefix = "" if setup == "tuned" else f"{setup}_"
        policy = SETUPS["tuned" if setup == "remat" else setup].policy
        for size in ("192x256", "352x480", "480x640"):
            result = raw.get(f"{setup}_train_{size}")
            if result is None:
                continue
            out[f"{prefix}train_img_s_{size}"] = result["img_s"]
            out[f"{prefix}peak_rss_mb_train_{size}"] = result["peak_rss_mb"]
            if f"forward_gflop_{size}" not in out:   # FLOPs not counted (see --only)
                continue
            gflops = 3 * out[f"forward_gflop_{size}"] * result["img_s"]
            out[f"{prefix}train_gflops_{size}"] = gflops
            out[f"{prefix}train_peak_fraction_{size}"] = gflops / PEAK_GFLOPS[policy]
            add_fractions(out, raw, f"{prefix}train_{size}", result, gflops, policy)
    for size in ("192x256", "352x480"):
        if "remat_train_img_s_" + size in out and f"train_img_s_{size}" in out:
            out[f"remat_speed_cost_{size}"] = \
                1 - out[f"remat_train_img_s_{size}"] / out[f"train_img_s_{size}"]
            out[f"remat_peak_rss_ratio_{size}"] = \
                out[f"remat_peak_rss_mb_train_{size}"] / out[f"peak_rss_mb_train_{size}"]
    for size in ("192x256", "352x480"):   # --remat's peak against the book's (its 0.5 target)
        if f"remat_peak_rss_mb_train_{size}" in out:
            out[f"remat_peak_rss_mb_train_{size}_vs_book"] = \
                out[f"remat_peak_rss_mb_train_{size}"] / BOOK[f"peak_rss_mb_train_{size}"]
    for name in VARIANTS:
        result, flops = raw.get(f"{name}_train_192x256"), raw.get(f"flops_{name}_192x256")
        if result is None:
            continue
        out.update({f"{name}_train_img_s_192x256": result["img_s"],
                    f"{name}_peak_rss_mb_train_192x256": result["peak_rss_mb"]})
        if flops is None:
            continue
        gflops = 3 * flops["gflop"] * result["img_s"]
        out.update({f"{name}_forward_gflop_192x256": flops["gflop"],
                    f"{name}_train_gflops_192x256": gflops})
        add_fractions(out, raw, f"{name}_train_192x256", result, gflops,
                      SETUPS["tuned"].policy)
    for setup in ("tuned", "float32", "plain", "unfolded"):
        prefix = "" if setup == "tuned" else f"{setup}_"
        policy = SETUPS["tuned" if setup == "unfolded" else setup].policy
        for size in ("192x256", "352x480"):
            result = raw.get(f"{setup}_eval_{size}")
            if not result:
                continue
            out[f"{prefix}eval_img_s_{size}"] = result["img_s"]
            for extra in ("img_s_min", "img_s_max", "repeats", "images", "traces_warmup",
                          "traces_total"):
                if result.get(extra) is not None:
                    out[f"{prefix}eval_{extra}_{size}"] = result[extra]
            if f"forward_gflop_{size}" in out:
                gflops = out[f"forward_gflop_{size}"] * result["img_s"]
                out[f"{prefix}eval_gflops_{size}"] = gflops
                add_fractions(out, raw, f"{prefix}eval_{size}", result, gflops, policy)
                add_beside_fractions(out, f"{prefix}eval_{size}", result,
                                     out[f"forward_gflop_{size}"])
        if f"{setup}_latency_480x640" in raw:
            latency = raw[f"{setup}_latency_480x640"]
            out[f"{prefix}latency_ms_480x640"] = latency["ms"]
            for extra in ("ms_min", "ms_max"):
                if extra in latency:
                    out[f"{prefix}latency_{extra}_480x640"] = latency[extra]
    for setup in ("tuned", "plain"):
        if f"{setup}_pipeline_192x256" in raw:
            prefix = "" if setup == "tuned" else "plain_"
            feed = raw[f"{setup}_pipeline_192x256"]["img_s"]
            out[f"{prefix}pipeline_img_s_192x256"] = feed
            trained = out.get(f"{prefix}train_img_s_192x256")
            if trained:   # share of the machine's time the input feed needs while training
                out[f"{prefix}pipeline_load_192x256"] = trained / feed
    if "converter" in raw:
        converter = raw["converter"]
        out.update(converter_ms_per_img=converter["ms_per_img"],
                   converter_img_s=1000 / converter["ms_per_img"],
                   mask_bytes_per_img=converter["mask_bytes"],
                   book_npy_bytes_per_img=converter["book_npy_bytes"],
                   peak_rss_mb_converter=converter["peak_rss_mb"])
    add_scaling(out, raw)
    add_ratios(out)
    return out


def add_scaling(out: dict, raw: dict) -> None:
    for size in ("192x256", "352x480", "480x640"):
        if f"train_img_s_{size}" in out:
            height, width = map(int, size.split("x"))
            out[f"train_mpixel_s_{size}"] = out[f"train_img_s_{size}"] * height * width / 1e6
    if "scaling_N" not in raw or "scaling_4N" not in raw:
        return
    small, large = raw["scaling_N"], raw["scaling_4N"]
    out.update(scaling_images_N=small["images"], scaling_images_4N=large["images"],
               epoch_s_N=small["epoch_s"], epoch_s_4N=large["epoch_s"],
               epoch_time_ratio_4N_over_N=large["epoch_s"] / small["epoch_s"],
               peak_rss_mb_N=small["peak_rss_mb"], peak_rss_mb_4N=large["peak_rss_mb"],
               peak_rss_ratio_4N_over_N=large["peak_rss_mb"] / small["peak_rss_mb"])


def add_ratios(out: dict) -> None:
    for key, book in BOOK.items():
        if key not in out:
            continue
        out[f"{key}_vs_book"] = out[key] / book
        plain = out.get(f"plain_{key}")
        if plain:
            out[f"{key}_vs_plain"] = out[key] / plain
    if "latency_ms_480x640" in out and "plain_latency_ms_480x640" in out:
        out["latency_480x640_speedup_vs_plain"] = \
            out["plain_latency_ms_480x640"] / out["latency_ms_480x640"]
    if "latency_ms_480x640" in out and "unfolded_latency_ms_480x640" in out:
        out["latency_480x640_speedup_fold_bn"] = \
            out["unfolded_latency_ms_480x640"] / out["latency_ms_480x640"]
    if "mask_bytes_per_img" in out:
        out["mask_bytes_vs_book_npy"] = out["mask_bytes_per_img"] / out["book_npy_bytes_per_img"]


def machine() -> dict:
    import platform
    return {"cpus": os.cpu_count(), "platform": platform.platform(),
            "load_average_at_end": os.getloadavg()}


def format_table(out: dict) -> str:
    rows = [("metric", "ours", "plain (same run)", "ours/plain", "book", "ours/book", "target")]
    for key in ("train_img_s_192x256", "train_img_s_352x480", "eval_img_s_192x256",
                "eval_img_s_352x480", "peak_rss_mb_train_192x256", "peak_rss_mb_train_352x480",
                "latency_ms_480x640", "converter_ms_per_img", "mask_bytes_per_img"):
        if key not in out:
            continue
        plain, book = out.get(f"plain_{key}"), BOOK.get(key)
        target = TARGETS.get(key)
        rows.append((key, f"{out[key]:.3g}", f"{plain:.3g}" if plain else "-",
                     f"{out[key] / plain:.2f}" if plain else "-",
                     f"{book:.3g}" if book else "-", f"{out[key] / book:.3g}" if book else "-",
                     f"{target[0]} {target[1]:.3g}" if target else "-"))
    for key in ("train_gflops_192x256", "train_gflops_352x480", "train_peak_fraction_192x256",
                "float32_train_img_s_192x256", "float32_train_img_s_352x480",
                "xla_train_img_s_192x256", "float32_eval_img_s_192x256",
                "float32_eval_img_s_352x480", "float32_latency_ms_480x640",
                "train_mpixel_s_192x256", "train_mpixel_s_352x480", "train_mpixel_s_480x640",
                "pipeline_img_s_192x256", "pipeline_load_192x256", "plain_pipeline_load_192x256",
                "epoch_s_N", "epoch_s_4N", "epoch_time_ratio_4N_over_N", "peak_rss_mb_N",
                "peak_rss_mb_4N", "peak_rss_ratio_4N_over_N", "unfolded_latency_ms_480x640",
                "latency_480x640_speedup_fold_bn", "unfolded_eval_img_s_192x256",
                "eval_traces_total_192x256", "eval_traces_total_352x480",
                "remat_train_img_s_192x256", "remat_train_img_s_352x480",
                "remat_speed_cost_192x256", "remat_speed_cost_352x480",
                "remat_peak_rss_ratio_192x256", "remat_peak_rss_ratio_352x480") + tuple(
                    k for k in out if k.endswith((*ROOF_SUFFIXES, "_roof_beside")) or
                    any(k == f"{v}_train_img_s_192x256" or k == f"{v}_peak_rss_mb_train_192x256"
                        for v in VARIANTS)):
        if key in out:
            rows.append((key, f"{out[key]:.3g}", "-", "-", "-", "-", "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows)


def get_args_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", help="write the results as JSON to this file")
    p.add_argument("--quick", action="store_true",
                   help="smoke run: tiny model, a step or two, tasks grouped per process")
    p.add_argument("--workdir", help="folder for the generated data (default: a temp folder)")
    p.add_argument("--only", default="",
                   help="run only the tasks whose key contains one of these comma-separated "
                   "strings (e.g. tuned_train,plain_train); the other results of an existing "
                   "--out file are kept")
    p.add_argument("--eval-repeats", type=int, default=3,
                   help="timed passes per evaluation measurement (the median is reported)")
    p.add_argument("--threads", default="0,0",
                   help="INTRA,INTER op threads for the tuned and float32 setups (0: TF's choice)")
    for flag, key in (("--n", "n"), ("--layers", "layers_"), ("--head-filters", "head_filters"),
                      ("--pyramid-filters", "pyramid_filters")):
        p.add_argument(flag, type=int, dest=key,
                       help=f"model override (book: {BOOK_MODEL[key]}; "
                       f"--quick: {QUICK_MODEL[key]})")
    return p


def merge(path: Path | None, raw: dict) -> tuple[dict, dict]:
    """The raw results of the `--out` file already there (if any) updated by this run's, and
    that file's other figures (those of a file written before raw results were kept)."""
    if path is None or not path.is_file():
        return raw, {}
    previous = json.loads(path.read_text())
    return {**previous.get("raw", {}), **raw}, previous


def main(argv=None) -> int:
    args = get_args_parser().parse_args(argv)
    model = dict(QUICK_MODEL if args.quick else BOOK_MODEL)
    model.update({k: getattr(args, k) for k in BOOK_MODEL if getattr(args, k) is not None})
    log = lambda message: print(message, file=sys.stderr, flush=True)  # noqa: E731
    run_id = time.strftime("%Y-%m-%dT%H:%M:%S")
    out_path = Path(args.out) if args.out else None
    raw = {}

    def write():
        """The JSON so far (after each measurement: a run cut short keeps what it measured)."""
        for result in raw.values():
            result["run"] = run_id
        merged, previous = merge(out_path, raw)
        previous.pop("raw", None)
        out = {**previous, **summarize(merged, model, args.quick), "raw": merged}
        if out_path:
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(json.dumps(out, indent=2) + "\n")
        return out

    with tempfile.TemporaryDirectory(prefix="fcn-bench-") as tmp:
        root = Path(args.workdir or tmp)
        log(f"data in {root}")
        data = make_data(root, args.quick, log)
        groups = plan(args.quick, data, model, args.only, args.eval_repeats)
        if args.quick:   # a smoke run: the setups' processes side by side, timings meaningless
            with ThreadPoolExecutor(len(groups)) as pool:
                for result in pool.map(lambda g: spawn(g, args.threads, log), groups):
                    raw.update(result)
        else:
            for group in groups:
                raw.update(spawn(group, args.threads, log))
                write()
    out = write()
    print(format_table(out))
    if out_path:
        log(f"results: {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
