"""`benchmarks/run.py --quick` runs end to end and writes every key other checks read (its
numbers are not checked: a smoke run on a tiny model times nothing meaningful)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ("train_img_s_192x256", "train_img_s_352x480", "eval_img_s_192x256",
            "eval_img_s_352x480", "latency_ms_480x640", "peak_rss_mb_train_192x256",
            "peak_rss_mb_train_352x480", "converter_ms_per_img", "mask_bytes_per_img")
ALSO = ("train_gflops_192x256", "forward_gflop_480x640", "plain_train_img_s_192x256",
        "train_img_s_192x256_vs_plain", "train_img_s_192x256_vs_book", "epoch_s_N", "epoch_s_4N",
        "peak_rss_mb_N", "peak_rss_mb_4N", "book_npy_bytes_per_img",
        "train_192x256_of_gemm_roof", "train_192x256_of_conv_roof", "eval_192x256_of_conv_roof",
        "train_192x256_of_conv_train_roof",
        "remat_train_img_s_192x256", "remat_peak_rss_mb_train_352x480",
        "camvid_train_img_s_192x256",
        "quick_train_gflops_192x256", "fcn32s_train_192x256_of_gemm_roof",
        "eval_traces_total_192x256", "unfolded_latency_ms_480x640", "eval_img_s_min_192x256",
        "eval_192x256_of_gemm_roof_beside", "eval_352x480_of_gemm_roof_beside_min")


@pytest.mark.slow
def test_quick_benchmark_writes_every_key(tmp_path):
    out = tmp_path / "quick.json"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--n", "1",
         "--layers", "2", "--head-filters", "4", "--pyramid-filters", "8",
         "--workdir", str(tmp_path / "data"), "--out", str(out)],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(out.read_text())
    for key in REQUIRED + ALSO:
        assert key in results, key
        assert isinstance(results[key], (int, float)) and results[key] > 0, (key, results[key])
    assert results["quick"] is True
    assert "train_img_s_192x256" in proc.stdout          # the table
    assert results["eval_traces_total_192x256"] == 1     # no retrace in the timed passes


def _run(tmp_path, *args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick",
                           "--workdir", str(tmp_path / "data"), *args],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_only_keeps_the_results_of_earlier_runs(tmp_path):
    """`--only` merges into an existing --out file: what an earlier run measured stays, what
    this run measured is added, each raw result tagged with its run."""
    out = tmp_path / "merged.json"
    _run(tmp_path, "--only", "gemm", "--out", str(out))
    first = json.loads(out.read_text())
    assert first["gemm_gflops_now"]["bfloat16"] > 0
    assert first.get("conv_gflops_now") is None
    _run(tmp_path, "--only", "convroof", "--out", str(out))
    merged = json.loads(out.read_text())
    assert merged["gemm_gflops_now"]["bfloat16"] == first["gemm_gflops_now"]["bfloat16"]
    assert merged["conv_gflops_now"]["gflops_bfloat16"] > 0
    assert merged["conv_gflops_now"]["train_gflops_bfloat16"] > 0
    assert set(merged["raw"]) == {"gemm", "gemm_end", "convroof", "convroof_end"}
    assert merged["raw"]["gemm"]["run"] == first["raw"]["gemm"]["run"]


def test_a_roof_is_the_faster_of_the_runs_start_and_end():
    """A roof caught in a slow window would inflate every fraction: the faster of the two
    measurements of the same run counts; one from another run never does."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import run
    result = {"run": "b"}
    raw = {"gemm": {"run": "b", "bfloat16": 400.0}, "gemm_end": {"run": "b", "bfloat16": 800.0},
           "convroof": {"run": "a", "gflops_bfloat16": 900.0},
           "convroof_end": {"run": "b", "gflops_bfloat16": 600.0, "train_gflops_bfloat16": 500.0}}
    assert run.roof(raw, result, "gemm", "bfloat16") == 800.0
    assert run.roof(raw, result, "conv", "bfloat16") == 600.0
    assert run.roof(raw, result, "conv_train", "bfloat16") == 500.0
    assert run.roof(raw, {"run": "c"}, "gemm", "bfloat16") is None


def test_each_evaluation_pass_is_also_held_to_the_roof_measured_beside_it():
    """`<prefix>_of_gemm_roof_beside`: every pass's GFLOP/s over the GEMM measured just
    before it; median, min and max over the passes (none without a roof for every pass)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import run
    out = {}
    result = {"img_s_each": [10.0, 20.0, 12.0], "gemm_gflops_each": [1000.0, 1600.0, 1500.0]}
    run.add_beside_fractions(out, "eval_192x256", result, gflop=50.0)
    assert out["eval_192x256_of_gemm_roof_beside"] == pytest.approx(0.5)
    assert out["eval_192x256_of_gemm_roof_beside_min"] == pytest.approx(0.4)
    assert out["eval_192x256_of_gemm_roof_beside_max"] == pytest.approx(0.625)
    missing = {}
    run.add_beside_fractions(missing, "eval_192x256", {"img_s_each": [1.0]}, gflop=50.0)
    assert missing == {}
