"""Bad input of every kind, as listed in docs/bad-input.md (each row names its test here).

An error is one `DataError` / `ConfigError` (exit status 2 on the command line) whose message
names the file and the problem, with no traceback unless `--debug`, and nothing half-written on
disk. Odd but usable input (greyscale, RGBA, 16-bit images, degenerate regions) works.
The command line is run end to end for a representative few; the rest run in-process.
"""

import io
import json
import os
import socket
import struct
import subprocess
import sys
import urllib.request
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fcn_keras import cli
from fcn_keras.annotations.convert import convert_via
from fcn_keras.classes import ClassInfo
from fcn_keras.config import parse_args
from fcn_keras.datasets import load_dataset
from fcn_keras.errors import ConfigError, DataError, FCNError, OutputError
from fcn_keras.evaluate import write_report
from fcn_keras.io_utils import atomic_write_text, check_image, read_index_mask

ROOT = Path(__file__).resolve().parents[1]
FCN_PY = ROOT / "fcn.py"
CONVERTER = ROOT / "utils" / "generate_gt_segmentation.py"
TINY = ["--n", "1", "--layers", "1", "--head-filters", "8", "--height", "16", "--width", "16",
        "--batch-size", "2", "--verbose", "0", "--seed", "1"]
H, W = 24, 32


# ---------------------------------------------------------------------------------------------
# Helpers: files of every kind, and the checks every error must pass


def rgb_pixels(height=H, width=W, seed=0):
    return np.random.default_rng(seed).integers(0, 255, (height, width, 3)).astype(np.uint8)


def save_image(path, array=None, mode=None, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(rgb_pixels() if array is None else array)
    (image.convert(mode) if mode else image).save(path, format=fmt)
    return path


def truncate(path, keep=0.9):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    return path


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(path, side=100_000):
    """A tiny PNG whose header claims side x side pixels (PIL refuses > ~179M pixels)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
                     + png_chunk(b"IDAT", zlib.compress(b"")) + png_chunk(b"IEND", b""))
    return path


def corrupt_png_data(path):
    """Flip bytes inside the IDAT chunk: the header is fine, the chunk's CRC is not."""
    data = bytearray(path.read_bytes())
    start = data.index(b"IDAT") + 8
    data[start:start + 8] = bytes(255 - b for b in data[start:start + 8])
    path.write_bytes(bytes(data))
    return path


def truncated_jpeg_with_thumbnail(path):
    """A truncated JPEG whose EXIF block holds a complete thumbnail (with its own EOI)."""
    thumb = io.BytesIO()
    Image.fromarray(rgb_pixels(8, 8)).save(thumb, format="JPEG")
    main = io.BytesIO()
    Image.fromarray(rgb_pixels()).save(main, format="JPEG")
    payload = b"Exif\x00\x00" + thumb.getvalue()
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = main.getvalue()
    data = data[:2] + app1 + data[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data[:len(data) - 200])
    return path


def leftovers(folder: Path) -> list[str]:
    """Temporary files of the atomic writers (hidden '.<name>.<random>' files)."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if p.is_file())


def assert_refused(exc_info, *fragments):
    message = str(exc_info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"
    return message


def run_script(script, *args, timeout=240):
    """Run a command-line script; it must fail with status 2, `error:` and no traceback."""
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, str(script), *map(str, args)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 2, result.stderr[-3000:]
    assert "error:" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    return result.stderr


# ---------------------------------------------------------------------------------------------
# VIA JSON: every flavour, refused with one DataError naming the JSON file


def v2(regions, filename="a.jpg"):
    return {f"{filename}123": {"filename": filename, "size": 123, "regions": regions,
                               "file_attributes": {}}}


def v1(regions, filename="a.jpg"):
    return {f"{filename}123": {"fileref": "", "size": 123, "filename": filename,
                               "base64_img_data": "", "file_attributes": {}, "regions": regions}}


def project(metadata):
    return {"_via_settings": {}, "_via_img_metadata": metadata,
            "_via_attributes": {"region": {}, "file": {}}}


def v3(xy, fname="a.jpg", vid="1", **parts):
    document = {"project": {"pid": "__VIA_PROJECT_ID__"}, "config": {},
                "attribute": {"1": {"aname": "name", "type": 1, "options": {}}},
                "file": {"1": {"fid": "1", "fname": fname, "type": 2, "loc": 1, "src": ""}},
                "view": {"1": {"fid_list": ["1"]}},
                "metadata": {"1_a": {"vid": vid, "flg": 0, "z": [], "xy": xy,
                                     "av": {"1": "1"}}}}
    document.update(parts)
    return document


def shape(name, klass="1", **params):
    return {"shape_attributes": {"name": name, **params}, "region_attributes": {"name": klass}}


def square(klass="1"):
    return shape("polygon", klass, all_points_x=[2, 12, 12, 2], all_points_y=[2, 2, 10, 10])


@pytest.fixture
def via_folder(tmp_path):
    save_image(tmp_path / "a.jpg")
    save_image(tmp_path / "b.png")
    return tmp_path


def write_json(folder, document, name="v.json"):
    path = folder / name
    if isinstance(document, bytes):
        path.write_bytes(document)
    elif isinstance(document, str):
        path.write_text(document, encoding="utf-8")
    else:
        path.write_text(json.dumps(document), encoding="utf-8")
    return path


VIA_REFUSED = [
    # JSON text
    pytest.param(b'{"a.jpg1": {"filename": "a.jpg",, }}', "not valid JSON", id="json-malformed"),
    pytest.param(json.dumps(v2([square()]))[:40], "not valid JSON", id="json-truncated"),
    pytest.param(b"", "not valid JSON", id="json-empty-file"),
    pytest.param(b"\xff\xfe{\x00}\x00", "not UTF-8", id="json-not-utf8"),
    pytest.param("[" * 100_000 + "]" * 100_000, "not valid JSON", id="json-nested-too-deep"),
    pytest.param([1, 2], "not a VIA file", id="json-top-level-not-object"),
    # VIA 1.x (regions dict)
    pytest.param(v1({"0": "oops"}), "region 0: must be an object", id="via1-region-not-object"),
    pytest.param({"x": {"regions": {}}}, "entry 'x' has no 'filename'", id="via1-missing-filename"),
    pytest.param(v1({"0": shape("rect", x=1, y=1, width=3)}), "rect has no 'height'",
                 id="via1-missing-shape-key"),
    # VIA 2.x export
    pytest.param(v2([{"region_attributes": {"name": "1"}}]), "has no 'shape_attributes'",
                 id="via2-missing-shape-attributes"),
    pytest.param(v2([{"shape_attributes": {"x": 1}, "region_attributes": {}}]),
                 "has no shape 'name'", id="via2-missing-shape-name"),
    pytest.param(v2([shape("polygon", all_points_x="1,2,3", all_points_y=[1, 2, 3])]),
                 "all_points_x must be a list of numbers", id="via2-wrong-type-points"),
    pytest.param(v2("none"), "'regions' must be a list", id="via2-wrong-type-regions"),
    pytest.param(v2([shape("rect", x="left", y=1, width=3, height=3)]), "x must be a number",
                 id="via2-string-coordinate"),
    pytest.param(v2([shape("polygon", all_points_x=[1, 5, 9], all_points_y=[1, 5])]),
                 "polygon has 3 x but 2 y", id="via2-mismatched-points"),
    pytest.param(v2([shape("triangle", x=1)]), "unsupported shape 'triangle'",
                 id="via2-unknown-shape"),
    pytest.param(v2([shape("circle", cx=float("nan"), cy=3, r=2)]), "not a finite number",
                 id="via2-nan-coordinate"),
    pytest.param(v2([shape("rect", x=1, y=1, width=float("inf"), height=2)]),
                 "not a finite number", id="via2-infinite-coordinate"),
    pytest.param(v2([shape("rect", x=1e300, y=1, width=1, height=1)]), "out of range",
                 id="via2-huge-coordinate"),
    pytest.param(v2([shape("circle", cx=5, cy=5, r=-3)]), "negative radius",
                 id="via2-negative-radius"),
    pytest.param(v2([shape("ellipse", cx=5, cy=5, rx=3, ry=2, theta="x")]),
                 "theta must be a number", id="via2-wrong-type-theta"),
    pytest.param(v2([square("cow")]), "unknown class 'cow'", id="via2-unknown-class"),
    pytest.param(v2([{"shape_attributes": square()["shape_attributes"],
                      "region_attributes": {"colour": "red"}}]), "no class name",
                 id="via2-missing-class"),
    pytest.param(v2([{"shape_attributes": square()["shape_attributes"],
                      "region_attributes": {"name": {"cat": True, "dog": True}}}]),
                 "several options ticked", id="via2-several-classes-ticked"),
    pytest.param(v2([square("300")]), "above 254", id="via2-class-index-too-large"),
    pytest.param(v2([square("1" * 5000)]), "above 254", id="via2-class-5000-digits"),
    # VIA 2.x project
    pytest.param(project([]), "'_via_img_metadata' must be an object",
                 id="via2-project-metadata-not-object"),
    pytest.param(project(v2([shape("circle", cx=1, cy=1)])), "circle has no 'r'",
                 id="via2-project-missing-key"),
    # VIA 3.x project
    pytest.param(v3([2, 0, 0, 5, 5], file=[]), "VIA 3 'file' must be an object",
                 id="via3-wrong-type-section"),
    pytest.param(v3([2, 0, 0, 5, 5], vid="9"), "refers to an unknown view/file",
                 id="via3-unknown-view"),
    pytest.param(v3([42, 0, 0]), "unknown VIA 3 shape id", id="via3-unknown-shape-id"),
    pytest.param(v3([2, 0, 0, 5]), "RECTANGLE needs 4 coordinates, got 3",
                 id="via3-wrong-coordinate-count"),
    pytest.param(v3([7, 0, 0, 5, float("nan"), 9, 9]), "not a finite number",
                 id="via3-nan-coordinate"),
    pytest.param(v3([2, 0, 0, 5, 5], file={"1": {"fid": "1"}}), "has no 'fname' string",
                 id="via3-missing-fname"),
    pytest.param(v3([2, 0, 0, 5, 5], view={"1": {"fid_list": []}}), "has no 'fid_list'",
                 id="via3-empty-fid-list"),
    # file names that leave the data folder
    pytest.param(v2([square()], "../a.jpg"), "leaves the data folder", id="path-parent"),
    pytest.param(v2([square()], "/etc/passwd"), "is an absolute path", id="path-absolute"),
    pytest.param(v2([square()], "C:\\data\\a.jpg"), "is an absolute path",
                 id="path-windows-absolute"),
    pytest.param(v2([square()], "https://example.com/a.jpg"), "is a URL", id="path-url"),
    pytest.param(v3([2, 0, 0, 5, 5], fname="sub/../../a.jpg"), "leaves the data folder",
                 id="path-via3-parent"),
    pytest.param({**v2([square()]), "again": v2([square()])["a.jpg123"]}, "listed twice",
                 id="via-image-listed-twice"),
]


@pytest.mark.parametrize("document, fragment", VIA_REFUSED)
def test_via_input_is_refused(via_folder, document, fragment):
    write_json(via_folder, document)
    with pytest.raises(DataError) as info:
        convert_via("v.json", via_folder, classes="1,2" if "cow" in json.dumps(
            document, default=str) else None)
    assert_refused(info, "v.json", fragment)
    assert not (via_folder / "masks").exists()   # nothing is written unless all checks out
    assert leftovers(via_folder) == []


def _mask(result, stem="a"):
    with Image.open(result.mask_paths[stem]) as mask:
        return np.asarray(mask)


VIA_CONVERTED = [
    pytest.param(v2([]), lambda m: not m.any(), "", id="via-empty-regions"),
    pytest.param(v2(None), lambda m: not m.any(), "", id="via-null-regions"),
    pytest.param(v2([shape("polygon", all_points_x=[1, 9], all_points_y=[1, 9]),
                     shape("rect", x=1, y=1, width=0, height=5),
                     shape("circle", cx=4, cy=4, r=0)]),
                 lambda m: not m.any(), "3 degenerate region(s) skipped",
                 id="via-degenerate-shapes"),
    pytest.param(v2([shape("polyline", all_points_x=[1, 9], all_points_y=[1, 9]),
                     shape("point", cx=3, cy=3)]), lambda m: not m.any(),
                 "line/point region(s) skipped", id="via-polyline-and-point"),
    pytest.param(v2([shape("rect", x=-10, y=-10, width=15, height=15)]),
                 lambda m: m[:5, :5].all() and m.sum() == 25, "", id="via-negative-coordinates"),
    pytest.param(v2([shape("rect", x=-1e8, y=-1e8, width=2e8, height=2e8)]),
                 lambda m: m.all(), "", id="via-large-coordinates-clipped"),
    pytest.param(v2([shape("rect", x=1000, y=1000, width=5, height=5)]),
                 lambda m: not m.any(), "lie entirely outside", id="via-region-outside-image"),
    pytest.param(v1({"10": square("2"), "2": shape("rect", "1", x=0, y=0, width=30, height=20)}),
                 lambda m: m[5, 5] == 2 and m[15, 20] == 1, "", id="via1-unordered-keys"),
]


@pytest.mark.parametrize("document, check, warning", VIA_CONVERTED)
def test_via_input_that_still_converts(via_folder, document, check, warning):
    write_json(via_folder, document)
    result = convert_via("v.json", via_folder)
    mask = _mask(result)
    assert mask.shape == (H, W) and check(mask)
    assert warning in " ".join(result.warnings)


# ---------------------------------------------------------------------------------------------
# Images: refused with the file named, or converted to RGB where that makes sense


def _text_as_jpg(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("this is not an image\n")
    return path


def _empty(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


BAD_IMAGES = [   # (id, make(path), name, fragment)
    pytest.param(lambda p: p, "img000.jpg", "image not found", "image file not found",
                 id="image-missing"),
    pytest.param(_empty, "img000.jpg", "empty image file (0 bytes)", None, id="image-empty"),
    pytest.param(lambda p: truncate(save_image(p)), "img000.jpg", "truncated JPEG", None,
                 id="image-truncated-jpeg"),
    pytest.param(truncated_jpeg_with_thumbnail, "img000.jpg", "truncated JPEG", None,
                 id="image-truncated-jpeg-with-thumbnail"),
    pytest.param(lambda p: truncate(save_image(p)), "img000.png", "Truncated File Read", None,
                 id="image-truncated-png"),
    pytest.param(lambda p: corrupt_png_data(save_image(p)), "img000.png", "broken PNG file",
                 None, id="image-corrupt-png-data"),
    pytest.param(_text_as_jpg, "img000.jpg", "not a readable image", None,
                 id="image-text-named-jpg"),
    pytest.param(bomb_png, "img000.png", "possible decompression bomb", None,
                 id="image-decompression-bomb"),
    pytest.param(lambda p: save_image(p, fmt="TIFF"), "img000.tif",
                 "TIFF images cannot be decoded by the input pipeline", "", id="image-tiff"),
]


@pytest.fixture
def small_dataset(make_folder_dataset):
    """`small_dataset(root)`: a folder dataset of 3 train, 1 val and 1 test HxW images."""
    return lambda root: make_folder_dataset(root, n_train=3, n_val=1, n_test=1, height=H,
                                            width=W)


def replace_image(root, name, make):
    for old in (root / "images").glob(f"{Path(name).stem}.*"):
        old.unlink()
    make(root / "images" / name)


@pytest.mark.parametrize("make, name, fragment, converter_fragment", BAD_IMAGES)
def test_bad_image_in_a_dataset_is_refused(tmp_path, small_dataset, make, name, fragment,
                                           converter_fragment):
    root = small_dataset(tmp_path / "data")
    replace_image(root, name, make)
    with pytest.raises(DataError) as info:
        load_dataset(root)
    image_name = "images/img000.*" if "missing" in fragment or "not found" in fragment \
        else f"images/{name}"
    assert_refused(info, image_name, fragment)


@pytest.mark.parametrize("make, name, fragment, converter_fragment", BAD_IMAGES)
def test_bad_image_in_via_annotations_is_refused(via_folder, make, name, fragment,
                                                 converter_fragment):
    make(via_folder / name)
    write_json(via_folder, v2([square()], name))
    if converter_fragment == "":   # the converter only needs the size: any format PIL reads
        assert _mask(convert_via("v.json", via_folder), Path(name).stem).shape == (H, W)
        return
    with pytest.raises(DataError) as info:
        convert_via("v.json", via_folder)
    assert_refused(info, f"v.json: {name}", converter_fragment or fragment)
    assert not (via_folder / "masks").exists()


@pytest.mark.parametrize("mode, fmt, name, expected", [
    pytest.param("L", None, "img000.png", None, id="image-greyscale"),
    pytest.param("RGBA", None, "img000.png", None, id="image-rgba"),
    pytest.param("P", None, "img000.png", None, id="image-palette"),
    pytest.param("I;16", None, "img000.png", 255, id="image-16-bit-png"),
    pytest.param("RGB", "WEBP", "img000.webp", None, id="image-webp"),
    pytest.param("CMYK", "JPEG", "img000.jpg", None, id="image-cmyk-jpeg"),
])
def test_odd_image_modes_work_as_rgb(tmp_path, small_dataset, mode, fmt, name, expected):
    import tensorflow as tf

    from fcn_keras.pipeline import load_image

    root = small_dataset(tmp_path / "data")

    def make(path):
        if mode == "I;16":   # a 16-bit greyscale PNG, full range
            Image.fromarray(np.full((H, W), 65535, np.uint16)).save(path)
        else:
            save_image(path, mode=mode, fmt=fmt)

    replace_image(root, name, make)
    dataset = load_dataset(root)
    sample = next(s for s in dataset.split("train") if s.stem == "img000")
    image = load_image(tf.constant(str(sample.image))).numpy()
    assert image.shape == (H, W, 3) and image.dtype == np.uint8
    if expected is not None:
        assert (image == expected).all()   # scaled to 8 bits, not clipped or wrapped
    write_json(root, v2([square()], f"images/{name}"))   # the converter takes it too
    assert convert_via("v.json", root, output_dir=tmp_path / "m").mask_paths


# ---------------------------------------------------------------------------------------------
# Masks, splits, lists, classes.json: dataset problems listed with the file named


def _mask_file(root, stem="img000"):
    return root / "masks" / f"{stem}.png"


def _write_list(name, data):
    def damage(root):
        (root / name).write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return damage


def _mask_values(values, dtype=np.uint8):
    def damage(root):
        mask = np.zeros((H, W), dtype)
        mask[:2, :len(values)] = values
        Image.fromarray(mask).save(_mask_file(root))
    return damage


def _classes_json(data):
    def damage(root):
        (root / "classes.json").write_text(data if isinstance(data, str) else json.dumps(data))
    return damage


DATASET_REFUSED = [   # (damage(root), options, fragments)
    pytest.param(lambda r: Image.new("L", (W + 1, H)).save(_mask_file(r)), {},
                 ["masks/img000.png: mask is 33x24 but image"], id="mask-wrong-size"),
    pytest.param(_mask_values([1, 7, 200]), {}, ["masks/img000.png: values [7, 200]"],
                 id="mask-values-out-of-range"),
    pytest.param(lambda r: Image.new("RGB", (W, H), (255, 0, 0)).save(_mask_file(r)), {},
                 ["masks/img000.png: mask has mode RGB"], id="mask-rgb-instead-of-indices"),
    pytest.param(_mask_values([1, 300], np.uint16), {},
                 ["masks/img000.png", "16-bit mask with values 0..300"], id="mask-16-bit-over-255"),
    pytest.param(lambda r: _mask_file(r).unlink(), {}, ["masks/img000.png: mask file not found"],
                 id="mask-missing"),
    pytest.param(lambda r: truncate(_mask_file(r), 0.6), {},
                 ["masks/img000.png: not a readable image"], id="mask-truncated"),
    pytest.param(_write_list("val.txt", "../outside\n"), {},
                 ["val.txt:1", "'../outside' points outside the data folder"],
                 id="split-list-parent-path"),
    pytest.param(_write_list("train.txt", "/etc/passwd\n"), {},
                 ["train.txt:1", "points outside the data folder"], id="split-list-absolute-path"),
    pytest.param(_write_list("train.txt", "img000\nimg404\n"), {},
                 ["images/img404.*: image not found"], id="split-list-unknown-stem"),
    pytest.param(_write_list("train.txt", b"img000\n\xff\xfe\n"), {},
                 ["train.txt: cannot read list file"], id="split-list-not-utf8"),
    pytest.param(_classes_json("{not json"), {}, ["classes.json: not a readable JSON"],
                 id="classes-json-malformed"),
    pytest.param(_classes_json({"names": ["a", "b", "c"], "ignore_index": 300}), {},
                 ["classes.json: 'ignore_index' must be an integer in 0..255"],
                 id="classes-json-bad-ignore-index"),
    pytest.param(_classes_json({"names": ["a", "b", "c"], "colors": [[0, 0, 0], [1, 1]]}), {},
                 ["classes.json: 'colors' must be a list of [r, g, b]"],
                 id="classes-json-bad-colours"),
    pytest.param(_classes_json({"names": ["a", "b", "c"],
                                "colors": [[0, 0, 0], [300, 0, 0], [0, 0, 255]]}), {},
                 ["classes.json: 'colors' must be a list of [r, g, b] lists of 0..255"],
                 id="classes-json-colour-out-of-range"),
    pytest.param(lambda r: None, {"classes": "a,b"},
                 ["2 class names given (a, b) but the dataset has 3 classes"],
                 id="classes-option-wrong-count"),
    pytest.param(lambda r: None, {"data_format": "voc"}, ["not a VOC folder"],
                 id="data-format-does-not-match"),
]


@pytest.mark.parametrize("damage, options, fragments", DATASET_REFUSED)
def test_dataset_problem_is_refused(tmp_path, small_dataset, damage, options, fragments):
    root = small_dataset(tmp_path / "data")
    damage(root)
    with pytest.raises(DataError) as info:
        load_dataset(root, **options)
    assert_refused(info, *fragments)


def test_camvid_lists_are_checked(tmp_path):
    root = tmp_path / "camvid"
    save_image(root / "train" / "a.png")
    (root / "trainannot").mkdir()
    Image.new("L", (W, H)).save(root / "trainannot" / "a.png")
    (root / "train.txt").write_text("train/a.png trainannot/a.png extra\n")
    with pytest.raises(DataError) as info:
        load_dataset(root, data_format="camvid")
    assert_refused(info, "train.txt:1", "expected 'image_path mask_path'")
    (root / "train.txt").write_text("train/a.png ../../trainannot/a.png\n")
    with pytest.raises(DataError) as info:
        load_dataset(root, data_format="camvid")
    assert_refused(info, "train.txt:1", "points outside the data folder")


def test_an_empty_split_stops_only_the_command_that_uses_it(tmp_path, small_dataset, capsys):
    root = small_dataset(tmp_path / "data")
    _write_list("train.txt", "")(root)
    dataset = load_dataset(root)
    assert "note: split 'train' is empty" in capsys.readouterr().err
    with pytest.raises(DataError) as info:
        dataset.split("train")
    assert_refused(info, "split 'train' is empty")


def test_missing_or_empty_split_and_unknown_layout(tmp_path, small_dataset):
    dataset = load_dataset(small_dataset(tmp_path / "data"))
    with pytest.raises(DataError) as info:
        dataset.split("holdout")
    assert_refused(info, "split 'holdout' does not exist", "available splits: train (3)")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path / "empty")
    assert_refused(info, "cannot tell the dataset format")
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path / "nowhere")
    assert_refused(info, "nowhere: data path is not a folder")


def test_16_bit_mask_within_range_is_read_as_indices(tmp_path):
    path = tmp_path / "m.png"
    Image.fromarray(np.array([[0, 1], [2, 255]], np.uint16)).save(path)
    assert read_index_mask(path).tolist() == [[0, 1], [2, 255]]


# ---------------------------------------------------------------------------------------------
# Files that break inside tf.data (after validation) are named, not a TensorFlow traceback


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    """Weights of the TINY model for 3 classes (with its classes.json), and for 4 classes."""
    from fcn_keras.models import build_model
    folder = tmp_path_factory.mktemp("weights")
    paths = {}
    for n_classes in (3, 4):
        model, _ = build_model("fcn", n_classes=n_classes, n=1, layers_=1, head_filters=8)
        paths[n_classes] = folder / f"tiny{n_classes}.weights.h5"
        model.save_weights(paths[n_classes])
    ClassInfo(["background", "square", "disc"]).save(folder / "tiny3.classes.json")
    return paths


def test_image_broken_after_validation_is_named_in_training(tmp_path, small_dataset):
    from fcn_keras.app import FCN
    root = small_dataset(tmp_path / "data")
    # A batch of all 3 training images: with batch 2 one step reads only 2 of them, and which 2
    # depends on shuffling and the parallel map's order, so the broken one could go unread.
    app = FCN(parse_args(["--data-path", str(root), "--save-dir", str(tmp_path / "w"),
                          "--train", "--epochs", "1", *TINY, "--batch-size", "3"]))
    assert "img001" in (root / "train.txt").read_text().split()
    _text_as_jpg(root / "images" / "img001.png")   # replaced once validation has passed
    with pytest.raises(DataError) as info:
        app.train()
    assert_refused(info, "images/img001.png: cannot be decoded", "Unknown image file format")
    assert leftovers(tmp_path) == []


def test_image_broken_after_validation_is_named_in_evaluation(tmp_path, small_dataset,
                                                              tiny_weights):
    from fcn_keras.app import FCN
    root = small_dataset(tmp_path / "data")
    out = tmp_path / "out"
    app = FCN(parse_args(["--data-path", str(root), "--evaluate", "--restore-weights",
                          str(tiny_weights[3]), "--output-dir", str(out), "--report",
                          str(out / "report.json"), *TINY]))
    app.restore_weights()
    truncate(root / "images" / "img004.png", 0.5)
    with pytest.raises(DataError) as info:
        app.evaluate()
    assert_refused(info, "images/img004.png: cannot be decoded")
    assert not (out / "report.json").exists()
    assert not out.exists() or leftovers(out) == []


# ---------------------------------------------------------------------------------------------
# Weights files


@pytest.mark.filterwarnings("ignore:Skipping nested container")   # Keras on a mismatch
def test_weights_for_another_architecture_or_no_weights_at_all(tmp_path, tiny_weights):
    from fcn_keras.app import load_weights
    from fcn_keras.backbones import build_backbone
    from fcn_keras.models import build_model
    config = parse_args(["--summary", *TINY])
    model, _ = build_model("fcn32s", n_classes=3, n=1, layers_=1)
    with pytest.raises(ConfigError) as info:   # another architecture
        load_weights(model, tiny_weights[3], config)
    assert_refused(info, "tiny3.weights.h5: does not fit this model")
    text = tmp_path / "notes.weights.h5"
    text.write_text("not weights")
    short = tmp_path / "short.weights.h5"
    short.write_bytes(tiny_weights[3].read_bytes()[:5000])
    for path, fragment in ((text, "not a readable Keras weights file"),
                           (short, "not a readable Keras weights file"),
                           (tmp_path, "is a folder, not a weights file")):
        with pytest.raises(ConfigError) as info:
            load_weights(model, path, config)
        assert_refused(info, str(path), fragment)
    with pytest.raises(ConfigError) as info:   # --backbone-weights of another network
        build_backbone("resnet", (None, None, 3), n_layers=1, n=1, weights=str(tiny_weights[3]))
    assert_refused(info, "--backbone-weights", "tiny3.weights.h5: cannot load into")


def test_class_weights_file_must_hold_finite_weights(tmp_path):
    from fcn_keras.losses import load_class_weights
    for text in ("[1, 2, Infinity]", "[1, 2, NaN]", "[1, 2]", "[1, 2, true]", "[1,2,",
                 "[1, 2, " + "9" * 400 + "]"):
        (tmp_path / "w.json").write_text(text)
        with pytest.raises(ConfigError) as info:
            load_class_weights(str(tmp_path / "w.json"), 3)
        assert_refused(info, "--class-weights", "w.json")


# ---------------------------------------------------------------------------------------------
# Command-line combinations (in-process: the parser and main's error handling)


@pytest.mark.parametrize("argv, fragment", [
    pytest.param([], "nothing to do", id="cli-nothing-to-do"),
    pytest.param(["--evaluate"], "--evaluate needs --restore-weights",
                 id="cli-evaluate-no-weights"),
    pytest.param(["--image-file", "x.jpg", "--train"], "--image-file needs --evaluate",
                 id="cli-image-file-without-evaluate"),
    pytest.param(["--resume", "--summary"], "--resume only applies to --train",
                 id="cli-resume-without-train"),
    pytest.param(["--evaluate", "--restore-weights", "nope.weights.h5"], "file not found",
                 id="cli-weights-not-found"),
    pytest.param(["--train", "--height", "0"], "--height must be at least 1", id="cli-height-zero"),
    pytest.param(["--train", "--width", "-5"], "--width must be at least 1",
                 id="cli-width-negative"),
    pytest.param(["--train", "--batch-size", "0"], "--batch-size must be at least 1",
                 id="cli-batch-size-zero"),
    pytest.param(["--train", "--channels", "4"], "--channels must be 1 (greyscale) or 3",
                 id="cli-channels-four"),
    pytest.param(["--train", "--channels", "1", "--backbone", "vgg16"], "takes RGB images",
                 id="cli-greyscale-with-imagenet-backbone"),
    pytest.param(["--train", "--val-fraction", "1"], "--val-fraction must be in [0, 1)",
                 id="cli-val-fraction-one"),
    pytest.param(["--train", "--color-jitter", "1.5"], "--color-jitter must be in [0, 1)",
                 id="cli-color-jitter-too-strong"),
    pytest.param(["--train", "--pyramid-blocks", "-1"], "--pyramid-blocks must be 0 or more",
                 id="cli-pyramid-blocks-negative"),
    pytest.param(["--train", "--context", "aspp"], "--context aspp applies to the skip-fusion",
                 id="cli-context-with-the-book-head"),
])
def test_cli_combination_is_refused(capsys, argv, fragment):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "error: " in err and fragment in err and "Traceback" not in err


@pytest.mark.parametrize("argv", [
    pytest.param(["--train", "--tile", "0x0"], id="cli-tile-zero"),
    pytest.param(["--train", "--tile", "big"], id="cli-tile-not-a-size"),
    pytest.param(["--train", "--scale-range", "2,1"], id="cli-scale-range-reversed"),
    pytest.param(["--train", "--arch", "unet"], id="cli-unknown-arch"),
    pytest.param(["--evaluate", "--tta-scales", "0.1,1"], id="cli-tta-scale-too-small"),
    pytest.param(["--evaluate", "--tta-scales", "big"], id="cli-tta-scales-not-numbers"),
    pytest.param(["--train", "--context", "psp"], id="cli-unknown-context"),
])
def test_cli_value_is_refused_by_the_parser(capsys, argv):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "error:" in err and "Traceback" not in err


def test_debug_shows_the_traceback(capsys):
    with pytest.raises(ConfigError):   # main re-raises: Python prints the traceback
        cli.main(["--evaluate", "--debug"])


def test_training_crop_smaller_than_the_network_stride(tmp_path, small_dataset):
    from fcn_keras.app import FCN
    root = small_dataset(tmp_path / "data")
    tiny = [*TINY[:TINY.index("--height")], "--height", "4", "--width", "16",
            "--batch-size", "2", "--verbose", "0"]
    with pytest.raises(ConfigError) as info:
        FCN(parse_args(["--data-path", str(root), "--train", "--save-dir",
                        str(tmp_path / "w"), *tiny]))
    assert_refused(info, "--height 4 is smaller than the network stride 8",
                   "at least 8x8")
    assert not (tmp_path / "w").exists()


# ---------------------------------------------------------------------------------------------
# Outputs: unwritable places are errors, and nothing half-written stays


def test_unwritable_outputs(tmp_path):
    folder = tmp_path / "report.json"
    folder.mkdir()   # a folder where the report should go
    with pytest.raises(OutputError) as info:
        write_report(folder, {"pixel_accuracy": 0.5, "mean_accuracy": 0.5, "mean_iou": 0.5,
                              "fw_iou": 0.5, "per_class_iou": [0.5], "book_miou": 0.5,
                              "book_pla": 0.5}, ["a"])
    assert_refused(info, "report.json: cannot write here")
    assert isinstance(info.value, FCNError) and isinstance(info.value, OSError)
    assert leftovers(tmp_path) == []
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputError) as info:   # a file where a folder should be
        atomic_write_text(blocker / "sub" / "x.json", "{}")
    assert_refused(info, "x.json: cannot write here")


def test_atomic_writes_get_the_usual_permissions(tmp_path):
    """Files written through a temp file get 0666 minus the umask, as open() would give them,
    not the owner-only 0600 of the temp file."""
    import os
    umask = os.umask(0o022)
    os.umask(umask)
    atomic_write_text(tmp_path / "report.json", "{}")
    assert (tmp_path / "report.json").stat().st_mode & 0o777 == 0o666 & ~umask


def test_converter_output_dir_that_is_a_file(via_folder):
    write_json(via_folder, v2([square()]))
    (via_folder / "out").write_text("x")
    with pytest.raises(DataError) as info:
        convert_via("v.json", via_folder, output_dir=via_folder / "out")
    assert_refused(info, "out: cannot write the masks")


def test_prediction_images_are_all_checked_before_anything_is_written(tmp_path):
    from fcn_keras.app import image_files
    folder = tmp_path / "images"
    save_image(folder / "a.png")
    truncate(save_image(folder / "b.jpg"))
    with pytest.raises(DataError) as info:
        image_files(str(folder))
    assert_refused(info, "b.jpg: truncated JPEG")
    with pytest.raises(DataError) as info:
        image_files(str(tmp_path / "nothing.png"))
    assert_refused(info, "nothing.png: image file not found")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError) as info:
        image_files(str(tmp_path / "empty"))
    assert_refused(info, "no images")


def test_prediction_refuses_a_decompression_bomb_before_decoding(tmp_path):
    from fcn_keras.pipeline import read_rgb
    with pytest.raises(DataError) as info:
        read_rgb(bomb_png(tmp_path / "huge.png"))
    assert_refused(info, "huge.png", "decompression bomb")


# ---------------------------------------------------------------------------------------------
# Security: pickles, paths, downloads


def npy_dataset(root, key="a.png"):
    save_image(root / "a.png")
    one_hot = np.zeros((H, W, 3), np.uint8)
    one_hot[..., 0] = 1
    np.save(root / "segmentation_train.npy", {key: one_hot}, allow_pickle=True)
    return root


def test_pickle_is_never_loaded_without_allow_pickle(tmp_path, monkeypatch):
    root = npy_dataset(tmp_path / "npy")
    calls = []
    original = np.load

    def recording_load(*args, **kwargs):
        calls.append(kwargs.get("allow_pickle", False))
        return original(*args, **kwargs)

    monkeypatch.setattr(np, "load", recording_load)
    with pytest.raises(DataError) as info:
        load_dataset(root)
    assert_refused(info, "segmentation_train.npy", "--allow-pickle")
    assert True not in calls   # the pickle was never opened
    assert load_dataset(root, allow_pickle=True).split("train")   # with the flag it is read
    assert True in calls


def test_pickled_keys_cannot_leave_the_data_folder(tmp_path):
    root = npy_dataset(tmp_path / "npy", key="../../evil.png")
    with pytest.raises(DataError) as info:
        load_dataset(root, allow_pickle=True)
    assert_refused(info, "'../../evil.png' points outside the data folder")
    assert not (tmp_path / "evil.png").exists()


class Downloaded(Exception):
    pass


def test_nothing_is_downloaded_unless_imagenet_is_asked_for(tmp_path, monkeypatch):
    import keras
    from keras.src.utils import file_utils

    from fcn_keras.backbones import BACKBONES, build_backbone
    from fcn_keras.models import ARCHS, build_model
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args[:2])
        raise Downloaded(f"network access: {args[:2]}")

    for target, name in ((file_utils, "get_file"), (keras.utils, "get_file"),
                         (urllib.request, "urlopen"), (urllib.request, "urlretrieve"),
                         (socket, "create_connection"), (socket.socket, "connect")):
        monkeypatch.setattr(target, name, refuse)
    for backbone in BACKBONES:
        for arch in ARCHS:
            build_model(arch, n_classes=3, backbone=backbone, n=1, layers_=3, head_filters=8,
                        backbone_weights="none")
        keras.backend.clear_session()
    save_image(tmp_path / "a.jpg")
    write_json(tmp_path, v2([square()]))
    convert_via("v.json", tmp_path)
    assert attempts == []
    with pytest.raises(ConfigError, match="could not load ImageNet weights"):   # the control
        build_backbone("vgg16", (None, None, 3), weights="imagenet")
    assert attempts


# ---------------------------------------------------------------------------------------------
# End to end: `python fcn.py` and the converter script (exit status 2, no traceback)


@pytest.mark.slow
def test_cli_training_on_a_truncated_image(tmp_path, small_dataset):
    root = small_dataset(tmp_path / "data")
    replace_image(root, "img002.jpg", lambda p: truncate(save_image(p)))
    replace_image(root, "img000.jpg", lambda p: truncate(save_image(p)))
    err = run_script(FCN_PY, "--train", "--data-path", root, "--save-dir", tmp_path / "w",
                     "--output-dir", tmp_path / "out", "--epochs", "1", *TINY)
    assert "images/img000.jpg: truncated JPEG" in err
    assert not (tmp_path / "w").exists() and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_training_crop_below_the_stride_and_pickles(tmp_path, small_dataset):
    root = npy_dataset(tmp_path / "npy")
    err = run_script(FCN_PY, "--train", "--data-path", root, "--save-dir", tmp_path / "w",
                     *TINY)
    assert "segmentation_train.npy" in err and "--allow-pickle" in err
    root = small_dataset(tmp_path / "data")
    err = run_script(FCN_PY, "--train", "--data-path", root, "--save-dir", tmp_path / "w",
                     *TINY, "--width", "6")
    assert "--width 6 is smaller than the network stride 8" in err
    assert not (tmp_path / "w").exists()


@pytest.mark.slow
def test_cli_weights_for_another_class_count(tmp_path, small_dataset, tiny_weights):
    root = small_dataset(tmp_path / "data")
    err = run_script(FCN_PY, "--evaluate", "--restore-weights", tiny_weights[4], "--data-path",
                     root, "--output-dir", tmp_path / "out", *TINY)
    assert "tiny4.weights.h5: does not fit this model" in err and "3 classes" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_cli_prediction_with_a_decompression_bomb_among_the_images(tmp_path, tiny_weights):
    folder = tmp_path / "images"
    save_image(folder / "a.png")
    bomb_png(folder / "b.png")
    err = run_script(FCN_PY, "--evaluate", "--restore-weights", tiny_weights[3], "--image-file",
                     folder, "--output-dir", tmp_path / "out", *TINY)
    assert "b.png" in err and "decompression bomb" in err
    assert not (tmp_path / "out").exists()   # a.png was not predicted either: checked first


@pytest.mark.parametrize("document, fragment", [
    pytest.param('{"a.jpg1": {"filename": "a.jpg", "regions": [', "not valid JSON",
                 id="converter-truncated-json"),
    pytest.param(v2([square()], "../a.jpg"), "leaves the data folder",
                 id="converter-parent-path"),
    pytest.param(v2([square()], "c.jpg"), "c.jpg: truncated JPEG", id="converter-truncated-image"),
])
def test_converter_script_errors(via_folder, document, fragment):
    truncate(save_image(via_folder / "c.jpg"))
    write_json(via_folder, document)
    err = run_script(CONVERTER, "-p", via_folder, "-j", "v.json")
    assert "v.json" in err and fragment in err
    assert not (via_folder / "masks").exists()
    assert leftovers(via_folder) == []


def test_check_image_accepts_a_jpeg_with_trailing_bytes(tmp_path):
    path = save_image(tmp_path / "a.jpg")
    path.write_bytes(path.read_bytes() + b"\x00camera trailer" * 100)
    assert check_image(path) == (W, H)
