"""utils/make_sample_dataset.py writes a valid VIA 2.x "drinks" dataset, the same for a seed."""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage.draw import polygon as fill_polygon

from fcn_keras.classes import ClassInfo

SCRIPT = Path(__file__).resolve().parents[1] / "utils" / "make_sample_dataset.py"
WIDTH, HEIGHT = 128, 96


@pytest.fixture(scope="module")
def generator():
    """The script as a module (utils/ is not a package)."""
    spec = importlib.util.spec_from_file_location("make_sample_dataset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being created
    spec.loader.exec_module(module)
    return module


def make(generator, out, seed=0):
    generator.main(["--out", str(out), "--train", "3", "--test", "1", "--width", str(WIDTH),
                    "--height", str(HEIGHT), "--seed", str(seed)])
    return out


@pytest.fixture(scope="module")
def dataset(generator, tmp_path_factory):
    return make(generator, tmp_path_factory.mktemp("drinks"))


def load_via(folder, split):
    return json.loads((folder / f"segmentation_{split}.json").read_text(encoding="utf-8"))


def test_writes_the_books_layout(dataset):
    names = sorted(p.name for p in dataset.iterdir())
    assert names == ["0000001.jpg", "0000002.jpg", "0000003.jpg", "0000004.jpg", "classes.json",
                     "segmentation_test.json", "segmentation_train.json"]
    assert [e["filename"] for e in load_via(dataset, "train").values()] == [
        "0000001.jpg", "0000002.jpg", "0000003.jpg"]
    assert [e["filename"] for e in load_via(dataset, "test").values()] == ["0000004.jpg"]
    for name in names[:4]:
        with Image.open(dataset / name) as image:
            assert image.format == "JPEG" and image.mode == "RGB"
            assert image.size == (WIDTH, HEIGHT)


def test_via_export_keys_and_regions(dataset):
    n_regions = 0
    for split in ("train", "test"):
        for key, entry in load_via(dataset, split).items():
            size = (dataset / entry["filename"]).stat().st_size
            assert entry["size"] == size and key == entry["filename"] + str(size)
            assert entry["file_attributes"] == {}
            for region in entry["regions"]:
                shape = region["shape_attributes"]
                assert shape["name"] == "polygon"
                xs, ys = np.array(shape["all_points_x"]), np.array(shape["all_points_y"])
                assert len(xs) == len(ys) >= 3
                assert xs.min() >= 0 and xs.max() <= WIDTH - 1
                assert ys.min() >= 0 and ys.max() <= HEIGHT - 1
                assert region["region_attributes"] == {"name": region["region_attributes"]["name"]}
                assert region["region_attributes"]["name"] in {"1", "2", "3"}
                n_regions += 1
    assert n_regions > 0


def test_classes_json(dataset):
    classes = json.loads((dataset / "classes.json").read_text(encoding="utf-8"))
    assert classes["names"] == ["background", "water bottle", "soda can", "juice can"]
    assert len(classes["colors"]) == 4 and classes["colors"][0] == [0, 0, 0]
    assert len({tuple(c) for c in classes["colors"]}) == 4
    assert classes["ignore_index"] == 255
    info = ClassInfo.load(dataset / "classes.json")
    assert info.n_classes == 4 and info.colors[1] == tuple(classes["colors"][1])


def test_same_seed_same_bytes(generator, dataset, tmp_path):
    again = make(generator, tmp_path / "again")
    for path in dataset.iterdir():
        assert (again / path.name).read_bytes() == path.read_bytes(), path.name
    other = make(generator, tmp_path / "other", seed=1)
    assert (other / "0000001.jpg").read_bytes() != (dataset / "0000001.jpg").read_bytes()


def test_visible_parts_do_not_overlap(generator):
    """Occluded drinks are annotated by their visible part, so regions tile without overlap."""
    from sample_dataset.scene import render_scene  # the script's package, on sys.path now
    for index in range(3):
        _, regions = render_scene(np.random.default_rng([7, index]), 240, 180)
        owner = np.zeros((180, 240), np.int32)
        overlap = total = 0
        for number, (_, (xs, ys)) in enumerate(regions, start=1):
            rr, cc = fill_polygon(np.array(ys), np.array(xs), owner.shape)
            overlap += np.count_nonzero(owner[rr, cc])
            total += len(rr)
            owner[rr, cc] = number
        assert overlap <= 0.01 * max(total, 1)
