"""Presets (`--preset NAME|FILE`) and the `--time-limit` callback."""

import json

import pytest

from fcn_keras import presets
from fcn_keras.callbacks import TimeLimit
from fcn_keras.config import parse_args
from fcn_keras.errors import ConfigError


def test_camvid_preset_is_shipped_and_parses():
    assert {"camvid", "camvid-fcn8s"} <= set(presets.available())
    config = parse_args(["--train", "--preset", "camvid", "--data-path", "/somewhere"])
    assert (config.arch, config.context, config.pyramid_blocks) == ("fcn4s", "aspp", 2)
    assert (config.n, config.pyramid_filters) == (2, 128)
    assert (config.height, config.width, config.batch_size) == (288, 384, 8)
    assert config.class_weights == "median-freq-sqrt" and config.loss == "ce+dice"
    assert config.color_jitter == 0.2 and config.schedule == "cosine"
    assert config.mixed_precision is None and config.time_limit <= 120 and config.tta == "ms-flip"
    assert config.data_format == "camvid" and config.data_path == "/somewhere"
    assert config.recalibrate_bn
    assert config.weights_name == "fcn4s-ResNet20v2-3layer-camvid-best-iou.weights.h5"


def test_first_camvid_preset_still_builds_its_shipped_model():
    config = parse_args(["--evaluate", "--preset", "camvid-fcn8s", "--restore-weights",
                         "weights/fcn8s-ResNet20v2-3layer-camvid-best-iou.weights.h5"])
    assert (config.arch, config.context, config.pyramid_blocks) == ("fcn8s", "none", 0)
    assert config.class_weights == "median-freq" and config.color_jitter == 0.0


def test_command_line_wins_over_preset():
    config = parse_args(["--preset", "camvid", "--train", "--epochs", "3", "--arch", "fcn",
                         "--context", "none", "--verbose", "0"])
    assert config.epochs == 3 and config.arch == "fcn" and config.verbose == 0
    assert config.context == "none" and config.n == 2  # untouched preset values stay


def test_preset_from_a_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"options": {"batch_size": 2, "--scale-range": [0.5, 1.5],
                                            "fast-layers": False, "tile": "64x96"}}))
    config = parse_args(["--train", "--preset", str(path)])
    assert config.batch_size == 2 and config.scale_range == (0.5, 1.5)
    assert config.fast_layers is False and config.tile == (64, 96)


@pytest.mark.parametrize("options, words", [
    ({"batch-sise": 2}, ["unknown option", "batch-sise"]),
    ({"arch": "unet"}, ["'arch' must be one of", "fcn8s"]),
    ({"epochs": "many"}, ["'epochs'"]),
    ({"mixed-precision": "yes"}, ["true or false"]),
    ({"scale-range": [2, 1]}, ["scale-range", "MIN <= MAX"]),
])
def test_bad_preset_values_name_the_file_and_option(tmp_path, options, words):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"options": options}))
    with pytest.raises(ConfigError) as info:
        parse_args(["--train", "--preset", str(path)])
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", '{"options": 3}', ""])
def test_unreadable_preset_files(tmp_path, text):
    path = tmp_path / "broken.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match="broken.json"):
        parse_args(["--train", "--preset", str(path)])


def test_unknown_preset_name_lists_the_shipped_ones(tmp_path):
    with pytest.raises(ConfigError, match="no such preset.*camvid"):
        parse_args(["--train", "--preset", "kitti"])
    with pytest.raises(ConfigError, match="file not found"):
        parse_args(["--train", "--preset", str(tmp_path / "missing.json")])


def test_time_limit_must_be_positive():
    with pytest.raises(ConfigError, match="--time-limit"):
        parse_args(["--train", "--time-limit", "0"])


class _Model:
    stop_training = False


def _run_epochs(limit_minutes, epoch_seconds):
    now = [0.0]
    callback = TimeLimit(limit_minutes, clock=lambda: now[0])
    callback.set_model(_Model())
    callback.on_train_begin()
    done = 0
    for seconds in epoch_seconds:
        now[0] += seconds
        callback.on_epoch_end(done)
        done += 1
        if callback.model.stop_training:
            break
    return done, callback


def test_time_limit_stops_before_an_epoch_would_overrun():
    # 60 s epochs, 5-minute limit: after 4 epochs (240 s) a fifth would end at 300 s, not past
    # it; after 5 (300 s) a sixth would: stop there.
    done, callback = _run_epochs(5, [60] * 10)
    assert done == 5 and callback.stopped_after == 5
    done, callback = _run_epochs(5, [70] * 10)   # 4 x 70 = 280 s; a fifth would end at 350 s
    assert done == 4 and callback.stopped_after == 4


def test_time_limit_not_reached():
    done, callback = _run_epochs(60, [60] * 10)
    assert done == 10 and callback.stopped_after is None and not callback.model.stop_training


def test_mixed_precision_auto_follows_the_hardware(tmp_path, monkeypatch):
    from fcn_keras import runtime

    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n")
    assert "avx512_bf16" in runtime.cpu_flags(str(cpuinfo))
    assert runtime.cpu_flags(str(tmp_path / "missing")) == set()
    monkeypatch.setattr(runtime, "native_low_precision", lambda: True)
    assert runtime.use_mixed_precision(None) is True
    assert runtime.use_mixed_precision(False) is False
    monkeypatch.setattr(runtime, "native_low_precision", lambda: False)
    assert runtime.use_mixed_precision(None) is False and runtime.use_mixed_precision(True)
    assert parse_args(["--train"]).mixed_precision is None
    assert parse_args(["--train", "--no-mixed-precision"]).mixed_precision is False


def test_configure_runtime_resets_the_policy():
    import keras

    from fcn_keras.runtime import configure_runtime

    with pytest.warns(UserWarning, match="emulated"):
        configure_runtime(parse_args(["--train", "--mixed-precision"]))
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"
    configure_runtime(parse_args(["--train"]))   # auto, patched to "no native support"
    assert keras.mixed_precision.global_policy().name == "float32"


@pytest.mark.slow
def test_camvid_recipe_runs_end_to_end(tmp_path, make_camvid_dataset):
    """The recipe's commands on a tiny CamVid layout: train with the preset (shortened), then
    evaluate with flip TTA; 11 classes, void ignored, the report on the test split."""
    import json

    import numpy as np

    from fcn_keras.cli import main

    data = make_camvid_dataset(tmp_path / "camvid", np.random.default_rng(0))
    out = tmp_path / "run"
    common = ["--preset", "camvid", "--data-path", str(data), "--save-dir", str(out),
              "--verbose", "0"]
    assert main(["--train", *common, "--epochs", "2", "--height", "64", "--width", "64",
                 "--batch-size", "2"]) in (0, None)
    weights = out / "fcn4s-ResNet20v2-3layer-camvid-best-iou.weights.h5"
    history = json.loads((out / "fcn4s-ResNet20v2-3layer-camvid-best-iou-history.json")
                         .read_text())
    assert weights.is_file() and [e["epoch"] for e in history] == [0, 1]
    report = tmp_path / "report.json"
    assert main(["--evaluate", *common, "--restore-weights", str(weights), "--tta", "flip",
                 "--report", str(report), "--output-dir", str(tmp_path / "eval")]) in (0, None)
    result = json.loads(report.read_text())
    assert len(result["per_class_iou"]) == 11 and result["class_names"][0] == "Sky"
    assert result["n_images"] == 2   # the test split, by default
    assert sum(map(sum, result["confusion_matrix"])) == 2 * (72 - 1) * 96   # void excluded


def test_time_limit_does_not_claim_the_last_epoch():
    now = [0.0]
    callback = TimeLimit(1, clock=lambda: now[0])
    callback.set_model(_Model())
    callback.set_params({"epochs": 2})
    callback.on_train_begin()
    now[0] = 50.0
    callback.on_epoch_end(0)          # a second 50 s epoch would pass 60 s: stop
    assert callback.stopped_after == 1
    callback.stopped_after, callback.model.stop_training = None, False
    now[0] = 55.0
    callback.on_epoch_end(1)          # the planned last epoch: not "stopped by the limit"
    assert callback.stopped_after is None and not callback.model.stop_training


@pytest.mark.slow
def test_camvid_script_passes_model_flags_to_its_evaluations(tmp_path, make_camvid_dataset):
    """`scripts/camvid.sh DATA OUT flags...`: the flags reach training and the evaluations (a
    model built with --arch fcn32s must be evaluated as one), except --resume (train only)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    root = Path(__file__).resolve().parents[1]
    data = make_camvid_dataset(tmp_path / "camvid", np.random.default_rng(0))
    out = tmp_path / "run"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(
        ["bash", str(root / "scripts" / "camvid.sh"), str(data), str(out), "--arch", "fcn32s",
         "--context", "none", "--resume", "--epochs", "1", "--n", "1", "--height", "64",
         "--width", "64", "--batch-size", "2", "--no-mixed-precision", "--verbose", "0"],
        capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "fcn32s-ResNet11v2-3layer-camvid-best-iou.weights.h5").is_file()
    for name in ("report-val.json", "report-val-flip.json", "report-val-msflip.json",
                 "report-test.json"):
        report = json.loads((out / name).read_text())
        assert len(report["per_class_iou"]) == 11
    assert json.loads((out / "report-val.json").read_text())["n_images"] == 2
    assert json.loads((out / "report-val-msflip.json").read_text())["tta"] == "ms-flip"
    record = out / "fcn32s-ResNet11v2-3layer-camvid-best-iou-recalibrate-bn.json"
    assert json.loads(record.read_text())["images"] == 4     # --recalibrate-bn, from the preset
    assert (out / "history.png").is_file()


def test_time_limit_fits_the_schedule_into_the_limit():
    from fcn_keras.callbacks import make_schedule
    schedule = make_schedule("cosine", 1.0, 1000)
    now = [0.0]
    callback = TimeLimit(5, clock=lambda: now[0], schedule=schedule)
    callback.set_model(_Model())
    callback.set_params({"epochs": 1000})
    callback.on_train_begin()
    rates = [schedule(0)]
    for epoch in range(1000):
        now[0] += 60.0
        callback.on_epoch_end(epoch)
        if callback.model.stop_training:
            break
        rates.append(schedule(epoch + 1))
    assert callback.stopped_after == 5 and schedule.epochs == 5   # 5 x 60 s fit in 5 minutes
    assert rates[-1] < 0.1 and rates == sorted(rates, reverse=True)  # decayed, within the limit
    short = make_schedule("cosine", 1.0, 3)
    callback = TimeLimit(60, clock=lambda: now[0], schedule=short)
    callback.set_model(_Model())
    callback.set_params({"epochs": 3})
    callback.on_train_begin()
    callback.on_epoch_end(0)
    assert short.epochs == 3   # never beyond the planned --epochs


@pytest.mark.slow
def test_ablation_script_writes_one_line_per_row(tmp_path, make_camvid_dataset):
    """`scripts/ablation.sh DATA OUT ROW...`: each row trains within its budget and leaves one
    JSON line (row, its flags, best val mIoU and epoch, minutes)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import numpy as np

    root = Path(__file__).resolve().parents[1]
    data = make_camvid_dataset(tmp_path / "camvid", np.random.default_rng(1))
    out = tmp_path / "ablation"
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
           "MINUTES": "0.01", "EXTRA": "--n 1 --height 64 --width 64 --batch-size 2 "
           "--pyramid-filters 8 --no-mixed-precision",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", str(root / "scripts" / "ablation.sh"), str(data), str(out),
                           "preset", "no-aspp"], capture_output=True, text=True, env=env,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "ablation.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rows] == ["preset", "no-aspp"]
    assert rows[1]["flags"] == "--context none"
    for row in rows:
        assert row["epochs"] == 1 and 0 <= row["best_val_miou"] <= 1
        # minutes of training + validation from the row's history (a tiny epoch may round to 0)
        history = json.loads(next((out / row["row"]).glob("*-best-iou-history.json")).read_text())
        seconds = sum(r["epoch_seconds"] + r.get("val_seconds", 0) for r in history)
        assert seconds > 0 and row["minutes"] == round(seconds / 60, 2)
        assert row["scored_split"] == "test" and 0 <= row["scored_miou"] <= 1
    bad = subprocess.run(["bash", str(root / "scripts" / "ablation.sh"), str(data), str(out),
                          "no-such-row"], capture_output=True, text=True, env=env, timeout=60)
    assert bad.returncode == 2 and "unknown row" in bad.stderr
