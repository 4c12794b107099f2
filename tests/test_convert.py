"""The VIA -> mask conversion job and its command line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fcn_keras.annotations.convert import convert_via
from fcn_keras.classes import ClassInfo
from fcn_keras.errors import DataError
from fcn_keras.io_utils import write_index_png

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "utils" / "generate_gt_segmentation.py"
H, W = 24, 32


def write_image(path, size=(W, H), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(len(path.name)).integers(0, 255, (size[1], size[0], 3))
    Image.fromarray(pixels.astype(np.uint8)).save(path, format=fmt)
    return path


def poly(xs, ys, name="1", key="name"):
    return {"shape_attributes": {"name": "polygon", "all_points_x": xs, "all_points_y": ys},
            "region_attributes": {key: name}}


def rect(x, y, w, h, name="1", key="name"):
    return {"shape_attributes": {"name": "rect", "x": x, "y": y, "width": w, "height": h},
            "region_attributes": {key: name}}


def via2(path, images):
    """A 2.x export: `images` maps file name -> list of regions."""
    data = {f"{name}123": {"filename": name, "size": 123, "regions": regions,
                           "file_attributes": {}} for name, regions in images.items()}
    path.write_text(json.dumps(data))
    return path


def read_mask(path):
    with Image.open(path) as image:
        assert image.mode == "P"
        return np.asarray(image)


@pytest.fixture
def drinks(tmp_path):
    """The book's layout: images, segmentation_train.json and segmentation_test.json."""
    for name in ("0001.jpg", "0002.png", "0003.jpg"):
        write_image(tmp_path / name)
    via2(tmp_path / "segmentation_train.json", {
        "0001.jpg": [poly([2, 20, 20, 2], [2, 2, 12, 12], "1"), rect(4, 4, 3, 2, "3")],
        "0002.png": [poly([0.5, 9.5, 9.5], [0.5, 0.5, 9.5], "2")]})
    via2(tmp_path / "segmentation_test.json", {"0003.jpg": [rect(0, 0, 4, 4, "1")]})
    return tmp_path


def test_converts_the_book_layout(drinks):
    result = convert_via(["segmentation_train.json", "segmentation_test.json"], drinks)
    assert result.output_dir == drinks / "masks"
    assert result.class_info.names == ["background", "1", "2", "3"]   # integer names rule
    assert result.stems == {"segmentation_train": ["0001", "0002"],
                            "segmentation_test": ["0003"]}
    assert result.image_paths["0002"] == drinks / "0002.png"
    assert result.mask_paths["0001"] == drinks / "masks" / "0001.png"
    assert (drinks / "masks" / "segmentation_train.txt").read_text() == "0001\n0002\n"
    assert (drinks / "masks" / "segmentation_test.txt").read_text() == "0003\n"
    assert ClassInfo.load(drinks / "masks" / "classes.json").names == result.class_info.names
    mask = read_mask(drinks / "masks" / "0001.png")
    assert mask.shape == (H, W) and mask.dtype == np.uint8
    assert mask[2:13, 2:21].sum() > 0 and mask[0, 0] == 0 and mask[13, 21] == 0
    assert mask[4, 4] == 3 and mask[5, 6] == 3 and mask[6, 4] == 1   # rect [4,7) x [4,6)
    assert np.count_nonzero(mask == 3) == 6 and np.count_nonzero(mask) == 19 * 11
    with Image.open(drinks / "masks" / "0001.png") as image:
        assert image.getpalette()[:12] == [0, 0, 0, 128, 0, 0, 0, 128, 0, 128, 128, 0]
    assert read_mask(drinks / "masks" / "0003.png")[:4, :4].all()
    assert result.skipped_missing == 0 and result.warnings == []
    write_index_png(drinks / "same.png", mask, result.class_info.palette())   # the shared writer
    assert (drinks / "same.png").read_bytes() == (drinks / "masks" / "0001.png").read_bytes()


def test_every_via_flavour_gives_the_same_masks(tmp_path):
    write_image(tmp_path / "a.jpg")
    xs, ys = [3, 25, 14], [2, 5, 20]
    shapes = [({"name": "polygon", "all_points_x": xs, "all_points_y": ys},
               [7, 3, 2, 25, 5, 14, 20]),
              ({"name": "rect", "x": 1, "y": 12, "width": 8, "height": 6}, [2, 1, 12, 8, 6]),
              ({"name": "circle", "cx": 24, "cy": 16, "r": 5.5}, [3, 24, 16, 5.5]),
              ({"name": "ellipse", "cx": 12, "cy": 8, "rx": 6, "ry": 2}, [4, 12, 8, 6, 2])]
    regions = [{"shape_attributes": s, "region_attributes": {"class": f"c{i}"}}
               for i, (s, _) in enumerate(shapes)]
    entry = {"filename": "a.jpg", "size": 1, "file_attributes": {}}
    (tmp_path / "v2.json").write_text(json.dumps({"a.jpg1": {**entry, "regions": regions}}))
    (tmp_path / "v1.json").write_text(json.dumps({"a.jpg1": {
        **entry, "fileref": "", "base64_img_data": "",
        "regions": {str(i): r for i, r in enumerate(regions)}}}))
    (tmp_path / "p2.json").write_text(json.dumps({
        "_via_settings": {}, "_via_attributes": {}, "_via_img_metadata": {
            "a.jpg1": {**entry, "regions": regions}}}))
    (tmp_path / "v3.json").write_text(json.dumps({
        "project": {}, "config": {},
        "attribute": {"1": {"aname": "class", "anchor_id": "FILE1_Z0_XY1", "type": 1,
                            "options": {}}},
        "file": {"7": {"fid": "7", "fname": "a.jpg"}}, "view": {"7": {"fid_list": ["7"]}},
        "metadata": {f"7_{i}": {"vid": "7", "flg": 0, "z": [], "xy": xy, "av": {"1": f"c{i}"}}
                     for i, (_, xy) in enumerate(shapes)}}))
    masks = []
    for flavour in ("v1", "v2", "p2", "v3"):
        result = convert_via(tmp_path / f"{flavour}.json", tmp_path,
                             output_dir=tmp_path / flavour)
        assert result.class_info.names == ["background", "c0", "c1", "c2", "c3"]   # sorted
        masks.append((tmp_path / flavour / "a.png").read_bytes())
    assert len(set(masks)) == 1
    mask = read_mask(tmp_path / "v3" / "a.png")
    assert set(np.unique(mask)) == {0, 1, 2, 3, 4}


def test_overlaps_area_first_or_file_order(tmp_path):
    write_image(tmp_path / "a.jpg")
    via2(tmp_path / "t.json", {"a.jpg": [rect(10, 10, 4, 4, "cup"),
                                         rect(0, 0, 30, 20, "plate")]})
    by_area = convert_via("t.json", tmp_path, output_dir=tmp_path / "area")
    by_file = convert_via("t.json", tmp_path, output_dir=tmp_path / "file", draw_order="file")
    cup = by_area.class_info.names.index("cup")
    assert read_mask(tmp_path / "area" / "a.png")[11, 11] == cup          # small on top
    assert read_mask(tmp_path / "file" / "a.png")[11, 11] != cup          # plate drawn last
    assert by_file.class_info.names == by_area.class_info.names
    with pytest.raises(DataError, match="draw order"):
        convert_via("t.json", tmp_path, draw_order="random")


def test_float_coordinates_and_clipping(tmp_path):
    write_image(tmp_path / "a.jpg")
    via2(tmp_path / "t.json", {"a.jpg": [
        poly([-40.5, 10.25, 10.25, -40.5], [-30.7, -30.7, 5.5, 5.5], "1"),
        rect(28.5, 20.5, 100, 100, "2")]})
    convert_via("t.json", tmp_path)
    mask = read_mask(tmp_path / "masks" / "a.png")
    assert np.argwhere(mask == 1).max(axis=0).tolist() == [5, 10]
    assert np.count_nonzero(mask == 1) == 6 * 11
    assert np.argwhere(mask == 2).min(axis=0).tolist() == [21, 29]
    assert np.count_nonzero(mask == 2) == 3 * 3


def test_classes_option_and_integer_names(drinks):
    result = convert_via(["segmentation_train.json", "segmentation_test.json"], drinks,
                         classes="water,soda,juice")
    assert result.class_info.names == ["background", "water", "soda", "juice"]
    assert read_mask(drinks / "masks" / "0001.png")[4, 4] == 3       # "3" is index 3
    via2(drinks / "named.json", {"0001.jpg": [rect(0, 0, 5, 5, "soda")]})
    convert_via("named.json", drinks, classes=["background", "water", "soda"],
                output_dir=drinks / "named")
    assert read_mask(drinks / "named" / "0001.png")[0, 0] == 2


def test_unknown_and_missing_classes_are_all_listed(drinks):
    via2(drinks / "bad.json", {
        "0001.jpg": [rect(0, 0, 5, 5, "Soda"), rect(0, 0, 5, 5, "cola"),
                     rect(0, 0, 5, 5, "7")],
        "0002.png": [rect(1, 1, 2, 2, "water", key="colour"), rect(1, 1, 2, 2, "tea")]})
    with pytest.raises(DataError) as info:
        convert_via("bad.json", drinks, classes="water,soda")
    message = str(info.value)
    assert message.startswith("5 problem(s)")
    assert "0001.jpg: region 0: unknown class 'Soda'" in message and "did you mean 'soda'" \
        in message
    assert "0001.jpg: region 1: unknown class 'cola'" in message
    assert "0001.jpg: region 2: unknown class '7'" in message
    assert "0002.png: region 0: no class name (region attributes: 'colour')" in message
    assert "0002.png: region 1: unknown class 'tea'" in message
    assert not (drinks / "masks").exists()          # nothing written when anything is wrong


def test_attribute_option(drinks):
    via2(drinks / "t.json", {"0001.jpg": [rect(0, 0, 5, 5, "tea", key="kind")]})
    result = convert_via("t.json", drinks, attribute="kind")
    assert result.class_info.names == ["background", "tea"]
    with pytest.raises(DataError, match="no class name"):
        convert_via("t.json", drinks, attribute="colour")


def test_missing_images_are_listed_or_skipped(drinks):
    via2(drinks / "t.json", {"0001.jpg": [], "gone1.jpg": [], "gone2.png": [],
                             "sub/gone3.jpg": []})
    (drinks / "broken.jpg").write_bytes(b"not an image")
    via2(drinks / "u.json", {"broken.jpg": []})
    with pytest.raises(DataError) as info:
        convert_via(["t.json", "u.json"], drinks)
    message = str(info.value)
    assert message.startswith("4 problem(s)")
    for name in ("gone1.jpg", "gone2.png", "sub/gone3.jpg"):
        assert f"t.json: {name}: " in message and "image file not found" in message
    assert "u.json: broken.jpg: " in message and "not a readable image" in message
    result = convert_via(["t.json", "u.json"], drinks, skip_missing=True)
    assert result.skipped_missing == 4
    assert result.stems == {"t": ["0001"], "u": []}
    assert any(w.startswith("4 image(s) missing or unreadable") for w in result.warnings)
    assert (drinks / "masks" / "u.txt").read_text() == ""


def test_paths_cannot_leave_the_data_folder(tmp_path):
    data = tmp_path / "data"
    write_image(data / "a.jpg")
    write_image(tmp_path / "secret.jpg")
    via2(data / "t.json", {"../secret.jpg": [], str(tmp_path / "secret.jpg"): [],
                           "a.jpg": []})
    with pytest.raises(DataError) as info:
        convert_via("t.json", data, skip_missing=True)
    assert "'../secret.jpg' leaves the data folder" in str(info.value)
    assert "is an absolute path" in str(info.value)


def test_name_clashes(tmp_path):
    write_image(tmp_path / "a.jpg")
    write_image(tmp_path / "sub" / "a.png")
    via2(tmp_path / "t.json", {"a.jpg": [], "sub/a.png": []})
    via2(tmp_path / "u.json", {"a.jpg": []})
    with pytest.raises(DataError) as info:
        convert_via(["t.json", "u.json"], tmp_path)
    assert "would overwrite the one of a.jpg" in str(info.value)
    assert "u.json: a.jpg: listed twice (also in t.json)" in str(info.value)


def test_non_area_and_degenerate_regions_are_skipped_with_one_warning_each(tmp_path):
    write_image(tmp_path / "a.jpg")
    line = {"shape_attributes": {"name": "polyline", "all_points_x": [1, 5],
                                 "all_points_y": [1, 5]}, "region_attributes": {}}
    point = {"shape_attributes": {"name": "point", "cx": 3, "cy": 3}, "region_attributes": {}}
    via2(tmp_path / "t.json", {"a.jpg": [line, point, line, poly([1, 9], [1, 9]),
                                         poly([1, 2, 3], [1, 2, 3]), rect(2, 2, 0, 5),
                                         rect(100, 100, 5, 5), rect(0, 0, 2, 2)]})
    result = convert_via("t.json", tmp_path)
    warnings = "\n".join(result.warnings)
    assert len(result.warnings) == 3
    assert "3 line/point region(s) skipped" in warnings
    assert "3 degenerate region(s) skipped" in warnings and "polygon with zero area" in warnings
    assert "1 region(s) lie entirely outside their image: a.jpg region 6" in warnings
    assert np.count_nonzero(read_mask(tmp_path / "masks" / "a.png")) == 4


def test_exif_rotated_photos_are_flagged(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (W, H)).save(tmp_path / "phone.jpg", exif=exif)
    write_image(tmp_path / "plain.jpg")
    via2(tmp_path / "t.json", {"phone.jpg": [], "plain.jpg": []})
    result = convert_via("t.json", tmp_path)
    assert result.warnings == [result.warnings[0]]
    assert result.warnings[0].startswith("1 image(s) have an EXIF rotation: ")
    assert result.warnings[0].endswith(": phone.jpg")


def test_rerun_is_idempotent(drinks):
    first = convert_via("segmentation_train.json", drinks, save_filename="labels.npy",
                        show=True)
    files = sorted(p for p in (drinks / "masks").rglob("*") if p.is_file())
    files.append(drinks / "labels.npy")
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files}
    second = convert_via(drinks / "segmentation_train.json", drinks,
                         save_filename=drinks / "labels.npy", show=True)
    assert first.written > 0 and second.written == 0
    assert {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in files} == before
    assert not [p for p in (drinks / "masks").iterdir() if p.name.startswith(".")]  # no temps


def test_book_npy_output(drinks):
    result = convert_via("segmentation_train.json", drinks, save_filename="train.npy")
    labels = np.load(drinks / "train.npy", allow_pickle=True).item()
    assert sorted(labels) == ["0001.jpg", "0002.png"]
    one_hot = labels["0001.jpg"]
    assert one_hot.shape == (H, W, result.class_info.n_classes) and one_hot.dtype == np.uint8
    assert (one_hot.sum(axis=-1) == 1).all()
    assert np.array_equal(one_hot.argmax(-1), read_mask(drinks / "masks" / "0001.png"))
    with pytest.raises(DataError, match="one annotation file at a time"):
        convert_via(["segmentation_train.json", "segmentation_test.json"], drinks,
                    save_filename="x.npy")


def test_show_writes_side_by_side_pictures(drinks):
    convert_via("segmentation_test.json", drinks, show=True)
    with Image.open(drinks / "masks" / "show" / "0003.png") as picture:
        assert picture.size == (2 * W, H)
        assert picture.getpixel((W + 1, 1)) == (128, 0, 0)      # class 1 colour
        assert picture.getpixel((W + 20, 20)) == (0, 0, 0)


def test_json_found_as_given_or_in_the_data_path(drinks, tmp_path_factory, monkeypatch):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    via2(elsewhere / "extra.json", {"0001.jpg": []})
    monkeypatch.chdir(elsewhere)
    result = convert_via(["extra.json", "segmentation_test.json"], drinks)
    assert result.stems == {"extra": ["0001"], "segmentation_test": ["0003"]}
    with pytest.raises(DataError, match="annotation file not found"):
        convert_via("nothing.json", drinks)
    with pytest.raises(DataError, match="data folder not found"):
        convert_via("extra.json", elsewhere / "nope")


# ---------------------------------------------------------------------------------------------
# Command line

def run_cli(*args, cwd=ROOT):
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=60)


def test_cli_converts_and_reports(drinks):
    done = run_cli("-p", str(drinks), "-j", "segmentation_train.json", "segmentation_test.json",
                   "--draw-order", "file", "--output-dir", str(drinks / "out"))
    assert done.returncode == 0, done.stderr
    assert "converted 3 image(s)" in done.stdout and "Traceback" not in done.stderr
    assert sorted(p.name for p in (drinks / "out").iterdir()) == \
        ["0001.png", "0002.png", "0003.png", "classes.json", "segmentation_test.txt",
         "segmentation_train.txt"]


def test_cli_skip_missing_and_a_classes_file(drinks):
    ClassInfo(["background", "one", "two", "three"]).save(drinks / "names.json")
    via2(drinks / "t.json", {"0001.jpg": [rect(0, 0, 5, 5, "two")], "gone.jpg": []})
    done = run_cli("-p", str(drinks), "-j", "t.json", "--classes", str(drinks / "names.json"),
                   "--skip-missing")
    assert done.returncode == 0, done.stderr
    assert "skipped 1 missing" in done.stdout
    assert "warning: 1 image(s) missing or unreadable, skipped" in done.stderr
    assert ClassInfo.load(drinks / "masks" / "classes.json").names[1:] == ["one", "two", "three"]
    assert read_mask(drinks / "masks" / "0001.png")[0, 0] == 2


def test_cli_error_exit_status_and_message(drinks):
    via2(drinks / "bad.json", {"0001.jpg": [rect(0, 0, 5, 5, "1")], "nope.jpg": [],
                               "../x.jpg": []})
    done = run_cli("-p", str(drinks), "-j", "bad.json", "--classes", "a,b")
    assert done.returncode == 2
    assert done.stderr.startswith("error: 2 problem(s)") and "Traceback" not in done.stderr
    assert "nope.jpg" in done.stderr and "../x.jpg" in done.stderr
    (drinks / "broken.json").write_text("{")
    done = run_cli("-p", str(drinks), "-j", "broken.json", "-q")
    assert done.returncode == 2 and "not valid JSON" in done.stderr and done.stdout == ""


def test_cli_help_documents_the_class_rule():
    done = run_cli("--help", cwd=ROOT.parent)
    assert done.returncode == 0
    text = " ".join(done.stdout.split())
    for phrase in ("--skip-missing", "--draw-order", "every name is an integer",
                   "sorted (case-sensitive)", "skimage.draw.polygon"):
        assert phrase in text


# ---------------------------------------------------------------------------------------------
# Fuzzing: any JSON converts or raises DataError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) |
    st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner,
                                                                   max_size=4),
    max_leaves=20)
coordinate = st.one_of(st.integers(-50, 80), st.floats(-1e12, 1e12), st.floats())
shape_attributes = st.one_of(
    st.fixed_dictionaries({"name": st.sampled_from(["polygon", "polyline"]),
                           "all_points_x": st.lists(coordinate, max_size=6),
                           "all_points_y": st.lists(coordinate, max_size=6)}),
    st.fixed_dictionaries({"name": st.just("rect"), "x": coordinate, "y": coordinate,
                           "width": coordinate, "height": coordinate}),
    st.fixed_dictionaries({"name": st.sampled_from(["circle", "ellipse", "point"]),
                           "cx": coordinate, "cy": coordinate, "r": coordinate,
                           "rx": coordinate, "ry": coordinate, "theta": coordinate}),
    json_values)
region = st.fixed_dictionaries({"shape_attributes": shape_attributes,
                                "region_attributes": st.one_of(
                                    st.fixed_dictionaries({"name": json_values}), json_values)})
entry = st.fixed_dictionaries({
    "filename": st.sampled_from(["a.jpg", "b.jpg", "../a.jpg", "/a.jpg", "x"]) | json_values,
    "regions": st.lists(region, max_size=4) | json_values})
document = st.one_of(st.dictionaries(st.text(max_size=4), entry | json_values, max_size=3),
                     st.fixed_dictionaries({"_via_img_metadata": st.dictionaries(
                         st.text(max_size=4), entry, max_size=3)}),
                     json_values)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(document=document)
def test_fuzzed_json_converts_or_raises_data_error(tmp_path_factory, document):
    folder = tmp_path_factory.mktemp("fuzz")
    write_image(folder / "a.jpg", size=(12, 9))
    write_image(folder / "b.jpg", size=(7, 5))
    (folder / "t.json").write_text(json.dumps(document))
    try:
        result = convert_via("t.json", folder)
    except DataError:
        return
    for stem, path in result.mask_paths.items():
        assert read_mask(path).shape == {"a": (9, 12), "b": (5, 7)}[stem]


def test_reruns_do_not_leave_temporary_files(drinks):
    convert_via("segmentation_train.json", drinks)
    leftovers = [p for p in os.listdir(drinks / "masks") if p.startswith(".")]
    assert leftovers == []


def test_ordered_map_keeps_order_and_bounds_pending_work():
    import threading
    import time

    from fcn_keras.annotations.convert import _ordered_map

    started, lock = [], threading.Lock()

    def work(i):
        with lock:
            started.append(i)
        time.sleep(0.001 * (i % 3))
        return i * i

    results = []
    for value in _ordered_map(work, list(range(40)), workers=2, ahead=2):
        results.append(value)
        with lock:   # never more than workers * ahead submitted beyond what was consumed
            assert len(started) <= len(results) + 2 * 2
    assert results == [i * i for i in range(40)]
    assert list(_ordered_map(work, [3], workers=4)) == [9]


def test_masks_are_the_same_with_one_or_several_threads(drinks, tmp_path, monkeypatch):
    import fcn_keras.annotations.convert as convert

    many = convert_via(["segmentation_train.json"], drinks, tmp_path / "many")
    real = convert._ordered_map
    monkeypatch.setattr(convert, "_ordered_map", lambda fn, items: real(fn, items, workers=1))
    one = convert_via(["segmentation_train.json"], drinks, tmp_path / "one")
    for stem, path in many.mask_paths.items():
        assert path.read_bytes() == one.mask_paths[stem].read_bytes()
