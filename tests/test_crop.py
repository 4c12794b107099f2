"""The bare `python fcn.py --train`: a training crop fitted to the data's images (never padding
the 320x240 sample to the book's 480x640), and after the first epoch how long the run will take."""

import pytest

from fcn_keras.callbacks import PaceReport, human_duration, pace_message
from fcn_keras.crop import fit_crop, median_size


def test_the_crop_is_the_median_image_rounded_up_to_the_stride():
    assert fit_crop([(240, 320)] * 5, 32) == (256, 320)            # the drinks sample
    assert fit_crop([(240, 320)] * 5, 64) == (256, 320)
    assert fit_crop([(100, 150), (240, 320), (250, 330)], 32) == (256, 320)   # the median
    assert fit_crop([(64, 80)], 32) == (64, 96)
    assert fit_crop([(20, 30)], 32) == (32, 32)                    # at least the stride


def test_the_crop_is_never_larger_than_the_books():
    assert fit_crop([(1080, 1920)] * 3, 32) == (480, 640)          # the book's crop
    assert fit_crop([(4000, 3000)], 32) == (640, 480)              # portrait photos
    assert fit_crop([(360, 1000)], 32) == (384, 640)
    assert fit_crop([(240, 320)], 32, largest=(128, 160)) == (128, 160)
    assert median_size([(1, 9), (3, 7), (2, 8)]) == (2, 8)


@pytest.mark.parametrize("seconds, text", [
    (0.4, "0 s"), (42, "42 s"), (60, "1 min 00 s"), (245, "4 min 05 s"), (3600, "1 h 00 min"),
    (99 * 42, "1 h 09 min"), (12_000, "3 h 20 min"), (190_000, "2 d 5 h")])
def test_durations_read_like_a_person_would_say_them(seconds, text):
    assert human_duration(seconds) == text


def test_the_estimate_multiplies_the_first_epoch_by_the_epochs_left():
    text = pace_message(1, 42.0, 99)
    assert text.startswith("Epoch 1 took 42 s; the 99 epochs left take about 1 h 09 min")
    assert "that was the last one" in pace_message(3, 5.0, 0)
    assert "--time-limit stops the run after 10 min 00 s" in pace_message(1, 60.0, 99, 10)
    assert "--time-limit" not in pace_message(1, 6.0, 9, 10)


def test_the_report_comes_once_after_the_first_epoch_of_the_run():
    times = iter([100.0, 130.0, 999.0, 999.0])
    said = []
    report = PaceReport(10, said.append, clock=lambda: next(times))
    for epoch in (4, 5):                    # a resumed run: its first epoch is the 5th
        report.on_epoch_begin(epoch)
        report.on_epoch_end(epoch)
    assert said == ["Epoch 5 took 30 s; the 5 epochs left take about 2 min 30 s at this pace "
                    "(the first epoch also builds the graph, so probably a little less)"]


@pytest.fixture(scope="module")
def small_images(tmp_path_factory, make_folder_dataset):
    return make_folder_dataset(tmp_path_factory.mktemp("crop") / "data", n_train=4, n_val=1,
                               n_test=1, height=40, width=70)


MODEL = ["--n", "1", "--layers", "2", "--head-filters", "8", "--pyramid-filters", "8",
         "--dataset", "shapes", "--no-mixed-precision"]


def test_bare_training_fits_the_crop_and_says_how_long_it_will_take(small_images, tmp_path,
                                                                   capsys):
    pytest.importorskip("tensorflow")
    import json

    from fcn_keras.app import FCN
    from fcn_keras.config import parse_args
    app = FCN(parse_args(["--train", "--data-path", str(small_images), "--save-dir",
                          str(tmp_path), "--epochs", "2", "--steps-per-epoch", "1",
                          "--batch-size", "2", "--verbose", "1", *MODEL]))
    from fcn_keras.predict import padding_multiple
    assert padding_multiple(app.model) == 16          # ResNet11v2 with two pyramid levels
    assert (app.config.height, app.config.width) == (48, 80)   # 40x70 rounded up to 16
    app.train()
    out = capsys.readouterr().out
    assert "Training crop 48x80 (height x width), fitted to the median training image 40x70" \
        in out
    assert "Epoch 1 took " in out and "the epoch left takes about " in out
    settings = json.loads(next(tmp_path.glob("*.model.json")).read_text())
    assert (settings["training"]["height"], settings["training"]["width"]) == (48, 80)


def test_a_crop_given_on_the_command_line_is_kept(small_images, tmp_path):
    pytest.importorskip("tensorflow")
    from fcn_keras.app import FCN
    from fcn_keras.config import parse_args
    app = FCN(parse_args(["--train", "--data-path", str(small_images), "--save-dir",
                          str(tmp_path), "--height", "32", "--verbose", "0", *MODEL]))
    assert (app.config.height, app.config.width) == (32, 640)
    assert not app.config.auto_crop
