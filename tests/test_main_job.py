"""README's first command, `scripts/main_job.sh`, on a VIA folder in the book's layout that is
not the shipped sample (other file names, other classes, other image size): every step runs and
writes its outputs; the training crop follows the images (utils/dataset_info.py)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.helpers import load_script

pytest.importorskip("tensorflow")

ROOT = Path(__file__).resolve().parents[1]


def polygon(x0, y0, x1, y1, name):
    return {"shape_attributes": {"name": "polygon", "all_points_x": [x0, x1, x1, x0],
                                 "all_points_y": [y0, y0, y1, y1]},
            "region_attributes": {"name": name}}


def via_folder(root: Path, rng, counts=(("train", 8), ("test", 3)), size=(70, 90)) -> Path:
    root.mkdir(parents=True)
    for split, count in counts:
        entries = {}
        for i in range(count):
            name = f"plate_{split}_{i}.jpg"
            image = (rng.random((*size, 3)) * 80 + 80).astype(np.uint8)
            image[10:40, 10:40] = (220, 40, 40)
            image[45:65, 50:85] = (30, 30, 200)
            Image.fromarray(image).save(root / name, quality=95)
            regions = [polygon(10, 10, 39, 39, "bread"), polygon(50, 45, 84, 64, "tofu")]
            entries[f"{name}-1"] = {"filename": name, "size": -1, "regions": regions,
                                    "file_attributes": {}}
        (root / f"segmentation_{split}.json").write_text(json.dumps(entries))
    return root


@pytest.mark.slow
def test_main_job_runs_on_any_via_folder(tmp_path):
    data = via_folder(tmp_path / "food", np.random.default_rng(0))
    out = tmp_path / "run"
    env = {**os.environ, "DATA": str(data), "OUT": str(out), "TRAIN_MINUTES": "0.02",
           "EPOCHS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run(["bash", str(ROOT / "scripts" / "main_job.sh")], capture_output=True,
                          text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "Training crop: 64x64" in proc.stdout   # whole 70x90 images in multiples of 32,
    #                                               at least the stride (32) x --downsample 2
    report = json.loads((out / "report-test.json").read_text())
    assert report["n_images"] == 3 and len(report["per_class_iou"]) == 3
    assert (out / "prediction" / "plate_test_0-mask.png").is_file()
    assert (out / "history.png").is_file()
    assert list(out.glob("fcn4s-*-food-best-iou.weights.h5"))


def test_dataset_info_crop_and_test_image(tmp_path):
    dataset_info = load_script(ROOT / "utils" / "dataset_info.py")
    main, suggest_crop = dataset_info.main, dataset_info.suggest_crop
    assert suggest_crop([(240, 320)] * 3) == (128, 160)      # the drinks sample
    assert suggest_crop([(768, 768), (760, 770)]) == (256, 256)   # photos: 256 at most
    assert suggest_crop([(360, 480)]) == (192, 256)
    assert suggest_crop([(40, 50)]) == (32, 32)                # never under the stride
    assert suggest_crop([(240, 320)] * 3, downsample=2) == (224, 320)   # whole images
    assert suggest_crop([(768, 768)], downsample=2) == (512, 512)     # 256 a side in the net
    assert suggest_crop([(40, 50)], downsample=2) == (64, 64)
    data = via_folder(tmp_path / "food", np.random.default_rng(1))
    subprocess.run([sys.executable, str(ROOT / "utils" / "generate_gt_segmentation.py"), "-p",
                    str(data), "-j", "segmentation_train.json", "segmentation_test.json", "-q"],
                   check=True, capture_output=True)
    assert main([str(data), "--test-image"]) == 0
    assert main([str(tmp_path / "nowhere"), "--crop"]) == 2
