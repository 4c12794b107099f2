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
        "peak_rss_mb_N", "peak_rss_mb_4N", "book_npy_bytes_per_img")


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
