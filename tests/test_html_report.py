"""`--evaluate --html DIR`: one self-contained page, checked as text and in headless Chromium
(the page loads with no console errors; a screenshot shows the table and the images)."""

import re
import shutil
import subprocess

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from fcn_keras.app import FCN  # noqa: E402
from fcn_keras.config import parse_args  # noqa: E402

MODEL = ["--arch", "fcn8s", "--n", "1", "--pyramid-filters", "8"]


@pytest.fixture(scope="module")
def page(tmp_path_factory, make_folder_dataset):
    root = tmp_path_factory.mktemp("html")
    data = make_folder_dataset(root / "data")
    FCN(parse_args(["--train", "--data-path", str(data), "--save-dir", str(root / "w"),
                    "--dataset", "shapes", *MODEL, "--height", "32", "--width", "48",
                    "--batch-size", "2", "--epochs", "2", "--steps-per-epoch", "2",
                    "--verbose", "0", "--no-mixed-precision"])).train()
    weights = root / "w" / "fcn8s-ResNet11v2-3layer-shapes-best-iou.weights.h5"
    FCN(parse_args(["--evaluate", "--data-path", str(data), "--restore-weights", str(weights),
                    "--html", str(root / "report"), "--worst", "2", "--output-dir",
                    str(root / "out"), "--verbose", "0"])).evaluate()
    return root / "report" / "index.html"


def test_page_is_self_contained_with_every_section(page):
    text = page.read_text(encoding="utf-8")
    for heading in ("Per class", "IoU per class", "Confusion matrix", "Training curves",
                    "The 2 worst images"):
        assert heading in text
    assert "square" in text and "disc" in text and "mIoU" in text
    images = re.findall(r"src='data:image/png;base64,", text)
    assert len(images) == 5                     # bars, confusion, curves, two worst images
    assert not re.search(r"(src|href)=['\"](https?:|//|file:)", text)   # nothing fetched
    assert "<script" not in text
    assert list(page.parent.iterdir()) == [page]


def test_html_needs_evaluate():
    from fcn_keras.errors import ConfigError
    with pytest.raises(ConfigError, match="--html needs --evaluate"):
        parse_args(["--train", "--html", "x"])


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt install chromium)")
@pytest.mark.slow
def test_page_renders_in_headless_chromium(page, tmp_path):
    from PIL import Image
    shot = tmp_path / "shot.png"
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
              f"--user-data-dir={tmp_path / 'profile'}"]
    run = subprocess.run(common + ["--enable-logging=stderr", "--v=0", "--dump-dom",
                                   page.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "Confusion matrix" in run.stdout and "<table" in run.stdout
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line]
    assert not console, console
    run = subprocess.run(common + [f"--screenshot={shot}", "--window-size=1200,2400",
                                   page.as_uri()], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (2400, 1200)
    blue = (pixels[..., 2] > 150) & (pixels[..., 0] < 120)      # the bars and matrix cells
    assert blue.mean() > 0.002, "no figure visible in the screenshot"
    assert (pixels.std(axis=(0, 1)) > 10).all(), "a blank page"
