"""The book's two steps keep the user's classes: `utils/generate_gt_segmentation.py --classes`
numbers the masks, then `fcn.py --train` (no --classes) trains on that numbering and never
converts the masks again with another one; a --classes in another order is refused."""

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcn_keras.classes import ClassInfo
from fcn_keras.datasets import load_dataset
from fcn_keras.errors import ConfigError

CONVERTER = Path(__file__).resolve().parents[1] / "utils" / "generate_gt_segmentation.py"
USER_ORDER = "tahu goreng,piring,roti tawar"          # not the sorted order
SORTED_ORDER = "piring,roti tawar,tahu goreng"
BOXES = {"piring": ([2, 20, 20, 2], [2, 2, 14, 14]),
         "roti tawar": ([24, 38, 38, 24], [4, 4, 12, 12]),
         "tahu goreng": ([8, 30, 30, 8], [16, 16, 22, 22])}


def converter():
    spec = importlib.util.spec_from_file_location(
        "generate_gt_segmentation", CONVERTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


@pytest.fixture
def via_set(tmp_path):
    """Four 40x24 photos, every class in each, in segmentation_train.json / _test.json."""
    rng = np.random.default_rng(0)
    entries = {}
    for stem in ("p1", "p2", "p3", "p4"):
        path = tmp_path / f"{stem}.png"
        Image.fromarray(rng.integers(0, 255, (24, 40, 3), dtype=np.uint8)).save(path)
        regions = [{"shape_attributes": {"name": "polygon", "all_points_x": xs,
                                         "all_points_y": ys},
                    "region_attributes": {"name": name}} for name, (xs, ys) in BOXES.items()]
        size = path.stat().st_size
        entries[stem] = {f"{path.name}{size}": {"filename": path.name, "size": size,
                                                "regions": regions, "file_attributes": {}}}
    train = {k: v for stem in ("p1", "p2", "p3") for k, v in entries[stem].items()}
    (tmp_path / "segmentation_train.json").write_text(json.dumps(train))
    (tmp_path / "segmentation_test.json").write_text(json.dumps(entries["p4"]))
    return tmp_path


def convert(data, classes):
    assert converter()(["-p", str(data), "-j", "segmentation_train.json",
                        "segmentation_test.json", "--classes", classes, "-q"]) == 0


def snapshot(folder):
    return {p.name: (p.read_bytes(), p.stat().st_mtime_ns) for p in sorted(folder.iterdir())
            if p.is_file()}


def test_training_data_keeps_the_numbering_the_converter_wrote(via_set):
    convert(via_set, USER_ORDER)
    before = snapshot(via_set / "masks")
    dataset = load_dataset(via_set)
    assert dataset.classes.names == ["background", "tahu goreng", "piring", "roti tawar"]
    assert snapshot(via_set / "masks") == before          # nothing converted again
    mask = np.asarray(Image.open(dataset.split("test")[0].mask))
    assert mask[8, 10] == 2 and mask[8, 30] == 3 and mask[19, 20] == 1
    again = load_dataset(via_set, classes=USER_ORDER)     # the same order given: fine
    assert again.classes.names == dataset.classes.names
    assert snapshot(via_set / "masks") == before


def test_fcn_train_without_classes_takes_the_converters(via_set, tmp_path):
    from fcn_keras.app import FCN
    from fcn_keras.config import parse_args
    convert(via_set, USER_ORDER)
    app = FCN(parse_args(["--train", "--data-path", str(via_set), "--save-dir",
                          str(tmp_path / "w"), "--n", "1", "--layers", "2", "--verbose", "0"]))
    assert app.classes.names == ["background", "tahu goreng", "piring", "roti tawar"]


def test_classes_in_another_order_stop_with_both_orders_and_the_file(via_set, tmp_path,
                                                                      capsys):
    from fcn_keras.cli import main
    convert(via_set, USER_ORDER)
    before = snapshot(via_set / "masks")
    with pytest.raises(ConfigError) as caught:
        load_dataset(via_set, classes=SORTED_ORDER)
    message = str(caught.value)
    assert "1=piring, 2=roti tawar, 3=tahu goreng" in message
    assert "1=tahu goreng, 2=piring, 3=roti tawar" in message
    assert str(via_set / "masks" / "classes.json") in message
    assert main(["--train", "--data-path", str(via_set), "--classes", SORTED_ORDER,
                 "--save-dir", str(tmp_path / "w"), "--n", "1", "--verbose", "0"]) == 2
    assert "masks/classes.json" in capsys.readouterr().err
    assert snapshot(via_set / "masks") == before
    assert not (tmp_path / "w").exists() or not any((tmp_path / "w").iterdir())


def test_a_dataset_classes_json_that_disagrees_with_the_masks_is_refused(via_set):
    convert(via_set, USER_ORDER)
    ClassInfo(["background", "piring", "roti tawar", "tahu goreng"]).save(
        via_set / "classes.json")
    with pytest.raises(ConfigError, match="classes.json numbers the classes"):
        load_dataset(via_set)


def test_renumbering_with_the_converter_after_training_is_followed(via_set):
    first = load_dataset(via_set)                          # training converted: sorted names
    assert first.classes.names == ["background", "piring", "roti tawar", "tahu goreng"]
    convert(via_set, USER_ORDER)                           # the user renumbers on purpose
    dataset = load_dataset(via_set)                        # the cache must not keep the old
    assert dataset.classes.names == ["background", "tahu goreng", "piring", "roti tawar"]
    mask = np.asarray(Image.open(dataset.split("test")[0].mask))
    assert mask[8, 10] == 2 and mask[19, 20] == 1
