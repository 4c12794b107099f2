"""Predicted masks -> VIA 2.x polygons -> the project's own converter -> the same masks.

Synthetic masks with several classes, objects with holes (and an object inside a hole),
touching objects of different classes, one-pixel-thin parts and a speck; and random masks of
any topology, which the exact outlines (tolerance 0) must give back pixel for pixel."""

import json

import numpy as np
import pytest
from PIL import Image

from fcn_keras.annotations.convert import convert_via
from fcn_keras.annotations.polygons import mask_polygons
from fcn_keras.annotations.via import parse_via
from fcn_keras.annotations.via_writer import ViaProject
from fcn_keras.classes import ClassInfo
from fcn_keras.errors import DataError

CLASSES = ClassInfo(["background", "piring", "roti tawar", "tahu goreng"])
SPECK = (slice(230, 232), slice(10, 12))


def scene(height=240, width=320) -> np.ndarray:
    """Three classes: a ring with a hole holding an object of another class, a block with two
    holes, touching rectangles, a one-pixel line, a two-pixel diagonal band, a 2x2 speck."""
    yy, xx = np.mgrid[:height, :width]
    mask = np.zeros((height, width), np.uint8)
    distance = (yy - 80) ** 2 + (xx - 90) ** 2
    mask[(distance < 50 ** 2) & (distance >= 20 ** 2)] = 1
    mask[distance < 8 ** 2] = 2
    mask[150:220, 150:200] = 2
    mask[150:220, 200:260] = 3
    mask[10, 180:300] = 3
    for i in range(60):
        mask[100 + i, 220 + i:222 + i] = 1
    mask[20:70, 250:315] = 1
    mask[30:40, 260:275] = 0
    mask[45:60, 290:305] = 2
    mask[SPECK] = 3
    return mask


def save_image(path, mask):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (*mask.shape, 3), dtype=np.uint8)).save(path)
    return path


def round_trip(tmp_path, masks, classes=CLASSES, **options):
    """Write `masks` ({file name: mask}) as one VIA project, convert it back with the project's
    converter, return ({file name: converted mask}, the VIA document)."""
    project = ViaProject(tmp_path, classes, **options)
    for name, mask in masks.items():
        project.add(save_image(tmp_path / name, mask), mask)
    via_file = project.write(tmp_path / "predicted.json")
    result = convert_via(via_file, tmp_path, output_dir=tmp_path / "back", classes=classes)
    back = {name: np.asarray(Image.open(result.mask_paths[name.rsplit(".", 1)[0]]))
            for name in masks}
    return back, json.loads(via_file.read_text())


def iou(a, b):
    union = np.count_nonzero(a | b)
    return np.count_nonzero(a & b) / union if union else 1.0


def test_round_trip_through_the_converter_keeps_every_class(tmp_path):
    mask = scene()
    back, _ = round_trip(tmp_path, {"scene.png": mask})
    converted = back["scene.png"]
    assert converted.shape == mask.shape
    assert np.all(converted[SPECK] == 0)             # the speck (4 pixels < 16) is left out
    expected = mask.copy()
    expected[SPECK] = 0
    for index in range(1, CLASSES.n_classes):
        truth, got = expected == index, converted == index
        assert iou(truth, got) >= 0.97, (CLASSES.names[index], iou(truth, got))
        assert np.count_nonzero(truth & got) / np.count_nonzero(truth) >= 0.97
    assert np.mean(converted == expected) >= 0.99
    # holes stay holes, the object inside one keeps its class, the thin line survives
    assert converted[80, 90] == 2 and converted[80, 90 + 14] == 0 and converted[80, 90 + 30] == 1
    assert np.all(converted[34, 262:273] == 0)
    assert np.count_nonzero(converted[10, 180:300] == 3) >= 0.97 * 120


def test_exact_outlines_give_back_the_mask_pixel_for_pixel(tmp_path):
    mask = scene()
    mask[SPECK] = 0
    back, _ = round_trip(tmp_path, {"scene.png": mask}, tolerance=0.0)
    np.testing.assert_array_equal(back["scene.png"], mask)


@pytest.mark.parametrize("seed", range(6))
def test_any_topology_survives_exact_outlines(seed):
    """Random blobs (nested holes, diagonal contacts, one-pixel parts) at tolerance 0, drawn by
    the converter's polygon rule, are the mask again."""
    from fcn_keras.annotations.rasterize import rasterize
    from fcn_keras.annotations.records import Region
    rng = np.random.default_rng(seed)
    noise = rng.random((30, 40))
    mask = np.select([noise < 0.35, noise < 0.5, noise < 0.6], [0, 1, 2], 3).astype(np.uint8)
    polygons = mask_polygons(mask, tolerance=0.0, min_area=0)
    regions = [Region("polygon", {"all_points_x": p.xs, "all_points_y": p.ys}, None, i)
               for i, p in enumerate(polygons)]
    drawn = rasterize(regions, [p.class_index for p in polygons], *mask.shape)
    np.testing.assert_array_equal(drawn, mask)


def test_simplified_polygons_have_fewer_vertices_than_exact_ones():
    mask = scene()
    exact = sum(len(p.xs) for p in mask_polygons(mask, tolerance=0.0))
    simple = sum(len(p.xs) for p in mask_polygons(mask, tolerance=1.0))
    assert simple < 0.85 * exact


def test_the_file_is_a_via2_project_the_reader_accepts(tmp_path):
    mask = scene()
    _, document = round_trip(tmp_path, {"scene.png": mask}, attribute="Name")
    assert document["_via_data_format_version"].startswith("2.")
    size = (tmp_path / "scene.png").stat().st_size
    assert document["_via_image_id_list"] == [f"scene.png{size}"]
    entry = document["_via_img_metadata"][f"scene.png{size}"]
    assert entry["filename"] == "scene.png" and entry["size"] == size
    names = {r["region_attributes"]["Name"] for r in entry["regions"]}
    assert names == {"piring", "roti tawar", "tahu goreng"}
    assert all(r["shape_attributes"]["name"] == "polygon" for r in entry["regions"])
    dropdown = document["_via_attributes"]["region"]["Name"]
    assert dropdown["type"] == "dropdown"
    assert list(dropdown["options"]) == ["piring", "roti tawar", "tahu goreng"]
    images, problems = parse_via(document, "predicted.json")
    assert problems == [] and len(images[0].regions) == len(entry["regions"])
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".predicted")]  # no temp file


def test_an_image_outside_the_root_is_named(tmp_path):
    project = ViaProject(tmp_path / "photos", CLASSES)
    outside = save_image(tmp_path / "elsewhere.png", np.zeros((20, 20), np.uint8))
    with pytest.raises(DataError, match="elsewhere.png: not inside"):
        project.add(outside, np.zeros((20, 20), np.uint8))


# ---------------------------------------------------------------------------------------------
# The command line and the Python API, with a tiny model trained for two steps


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory, make_folder_dataset):
    pytest.importorskip("tensorflow")
    from fcn_keras.app import FCN
    from fcn_keras.config import parse_args
    root = tmp_path_factory.mktemp("via_cli")
    data = make_folder_dataset(root / "data", n_train=4, n_val=1, n_test=1)
    FCN(parse_args(["--train", "--data-path", str(data), "--save-dir", str(root / "w"),
                    "--dataset", "shapes", "--arch", "fcn8s", "--n", "1",
                    "--pyramid-filters", "8", "--height", "64", "--width", "64",
                    "--batch-size", "2", "--epochs", "1", "--steps-per-epoch", "2",
                    "--verbose", "0", "--no-mixed-precision", "--seed", "1"])).train()
    return data, root / "w" / "fcn8s-ResNet11v2-3layer-shapes-best-iou.weights.h5"


def test_cli_writes_predictions_that_convert_back_to_its_masks(tiny_weights, tmp_path):
    from fcn_keras.cli import main
    data, weights = tiny_weights
    via_file = tmp_path / "out" / "predicted.json"
    masks = tmp_path / "masks"
    assert main(["--image-file", str(data / "images"), "--via-out", str(via_file),
                 "--restore-weights", str(weights), "--output-dir", str(masks),
                 "--via-tolerance", "1", "--verbose", "0"]) == 0
    document = json.loads(via_file.read_text())
    names = sorted(p.name for p in (data / "images").iterdir())
    assert [e["filename"] for e in document["_via_img_metadata"].values()] == names
    classes = ClassInfo.load(weights.with_name(weights.name.split(".")[0] + ".classes.json"))
    result = convert_via(via_file, data / "images", output_dir=tmp_path / "back",
                         classes=classes)
    for name in names:
        stem = name.rsplit(".", 1)[0]
        predicted = np.asarray(Image.open(masks / f"{stem}-mask.png"))
        converted = np.asarray(Image.open(result.mask_paths[stem]))
        for index in np.unique(predicted):
            truth, got = predicted == index, converted == index
            if index and np.count_nonzero(truth) >= 200:   # specks may be left out
                assert iou(truth, got) >= 0.97, (name, index, iou(truth, got))


def test_api_to_via_matches_the_cli(tiny_weights, tmp_path):
    from fcn_keras import Segmenter
    data, weights = tiny_weights
    image = sorted((data / "images").iterdir())[0]
    path = Segmenter.from_weights(weights).to_via(image, tmp_path / "one.json", tolerance=0.0,
                                                  min_area=0)
    document = json.loads(path.read_text())
    (entry,) = document["_via_img_metadata"].values()
    assert entry["filename"] == image.name
    assert document["_via_settings"]["core"]["default_filepath"].rstrip("/\\") == \
        str(image.parent.resolve())


@pytest.mark.parametrize("argv, message", [
    (["--evaluate", "--via-out", "x.json"], "--via-out needs --image-file"),
    (["--image-file", "x.png", "--via-out", "x.txt"], "name a .json file"),
    (["--image-file", "x.png"], "--image-file needs --restore-weights"),
    (["--image-file", "x.png", "--via-out", "x.json", "--via-tolerance", "-1"],
     "--via-tolerance must be 0 or more"),
])
def test_cli_refuses_bad_via_options(argv, message, capsys):
    from fcn_keras.cli import main
    assert main(argv) == 2
    assert message in capsys.readouterr().err
