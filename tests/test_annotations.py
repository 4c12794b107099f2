"""COCO, LabelMe, CVAT XML and CVAT/VOC mask folders: each built here in a temp dir and
converted, checked pixel for pixel against masks drawn independently (the COCO API, a copy of
labelme's own drawing code, skimage, plain numpy)."""

import base64
import io
import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage.draw import ellipse as sk_ellipse

from fcn_keras.annotations import detect_format, rle
from fcn_keras.annotations.convert import convert_annotations
from fcn_keras.annotations.rasterize import coco_polygon_footprint
from fcn_keras.errors import DataError

H, W = 30, 40


def save_image(path, size=(W, H), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (90, 120, 150)).save(path, format=fmt)
    return path


def read_mask(path):
    return np.asarray(Image.open(path))


def coco_encode(mask):
    """Uncompressed COCO counts of a bool mask (column-major, 0s first), written here."""
    flat = mask.T.ravel().astype(np.int8)
    change = np.flatnonzero(np.diff(flat)) + 1
    edges = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(edges).tolist()
    return ([0] + counts) if flat[0] else counts


def coco_string(counts):
    """COCO's compressed counts string (the COCO API's documented encoding), written here."""
    out = []
    for i, value in enumerate(counts):
        x = value - counts[i - 2] if i > 2 else value
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            out.append(chr((c | (0x20 if more else 0)) + 48))
    return "".join(out)


# ---------------------------------------------------------------------------------------------
# COCO

def coco_reference_polygon(xy):
    """The COCO API's mask of a polygon (pycocotools; the test is skipped without it)."""
    mask_utils = pytest.importorskip("pycocotools.mask")
    return mask_utils.decode(mask_utils.frPyObjects([list(xy)], H, W))[..., 0].astype(bool)


def test_coco_polygons_match_the_coco_api_bit_for_bit():
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(1)
    for trial in range(300):
        h, w = (int(v) for v in rng.integers(1, 30, 2))
        xy = rng.uniform(-4, max(h, w) + 4, 2 * int(rng.integers(3, 8)))
        xy = np.round(xy * 2) / 2 if trial % 2 else xy
        expected = mask_utils.decode(mask_utils.frPyObjects([xy.tolist()], h, w))[..., 0]
        got = np.zeros((h, w), np.uint8)
        footprint = coco_polygon_footprint([xy.tolist()], h, w)
        if footprint is not None:
            footprint.paint(got, 1)
        assert np.array_equal(got, expected), xy.tolist()


def test_coco_integer_box_polygon_covers_its_width_times_height():
    footprint = coco_polygon_footprint([[2, 3, 12, 3, 12, 8, 2, 8]], 20, 20)
    got = np.zeros((20, 20), np.uint8)
    footprint.paint(got, 1)
    expected = np.zeros((20, 20), np.uint8)
    expected[3:8, 2:12] = 1
    assert np.array_equal(got, expected)


def test_rle_fallback_decoder_agrees_with_pycocotools(monkeypatch):
    mask_utils = pytest.importorskip("pycocotools.mask")
    rng = np.random.default_rng(2)
    for _ in range(50):
        h, w = (int(v) for v in rng.integers(1, 25, 2))
        mask = np.asfortranarray(rng.random((h, w)) < rng.random())
        text = mask_utils.encode(mask.astype(np.uint8))["counts"].decode()
        counts = rle.string_to_counts(text)
        assert counts == coco_encode(mask)
        assert text == coco_string(counts)
        assert np.array_equal(rle.counts_to_mask(counts, h, w), mask)
        assert np.array_equal(rle.decode_coco(counts, text, h, w), mask)
    monkeypatch.setattr(rle, "_coco_mask", None)
    assert np.array_equal(rle.decode_coco(counts, None, h, w), mask)


def make_coco(root, rng):
    """Two images; categories with gaps (ids 7 and 3); a two-part polygon, an uncompressed and
    a compressed RLE (crowd), and a box-only annotation."""
    save_image(root / "images" / "a.png")
    save_image(root / "images" / "sub" / "b.jpg", fmt="JPEG")
    blob = rng.random((H, W)) < 0.3
    small = np.zeros((H, W), bool)
    small[10:14, 20:26] = True
    coco = {
        "images": [{"id": 1, "file_name": "a.png", "width": W, "height": H},
                   {"id": 2, "file_name": "sub/b.jpg", "width": W, "height": H}],
        "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 3, "iscrowd": 0,
             "segmentation": [[1.5, 2, 15, 2.5, 14, 20], [20.2, 20, 36, 21, 30, 28.7]]},
            {"id": 2, "image_id": 1, "category_id": 7, "iscrowd": 0,
             "segmentation": {"size": [H, W], "counts": coco_encode(small)}},
            {"id": 3, "image_id": 2, "category_id": 7, "iscrowd": 1,
             "segmentation": {"size": [H, W], "counts": coco_string(coco_encode(blob))}},
            {"id": 4, "image_id": 2, "category_id": 3, "bbox": [1, 1, 5, 5],
             "segmentation": []}]}
    (root / "annotations").mkdir()
    (root / "annotations" / "instances_train.json").write_text(json.dumps(coco))
    return root / "annotations" / "instances_train.json", blob, small


def test_coco_file_converts_pixel_for_pixel(tmp_path):
    path, blob, small = make_coco(tmp_path, np.random.default_rng(3))
    result = convert_annotations(path, tmp_path / "images", tmp_path / "out")
    assert result.formats == {str(path): "coco"}
    assert result.class_info.names == ["background", "dog", "cat"]   # by id: 3, 7
    dog = coco_reference_polygon([1.5, 2, 15, 2.5, 14, 20]) | \
        coco_reference_polygon([20.2, 20, 36, 21, 30, 28.7])
    expected = np.where(dog, 1, 0)
    expected[small] = 2             # the smaller region is painted last
    assert np.array_equal(read_mask(tmp_path / "out" / "a.png"), expected)
    assert np.array_equal(read_mask(tmp_path / "out" / "b.png"), np.where(blob, 2, 0))
    assert result.stems == {"instances_train": ["a", "b"]}
    assert any("1 annotation(s) without a segmentation" in w for w in result.warnings)


def test_coco_without_pycocotools_gives_the_same_masks(tmp_path, monkeypatch):
    path, _, _ = make_coco(tmp_path, np.random.default_rng(4))
    with_api = convert_annotations(path, tmp_path / "images", tmp_path / "api")
    monkeypatch.setattr(rle, "_coco_mask", None)
    without = convert_annotations(path, tmp_path / "images", tmp_path / "numpy")
    for stem, mask in with_api.mask_paths.items():
        assert mask.read_bytes() == without.mask_paths[stem].read_bytes()


def test_classes_option_wins_over_coco_categories(tmp_path):
    path, _, small = make_coco(tmp_path, np.random.default_rng(5))
    result = convert_annotations(path, tmp_path / "images", tmp_path / "out",
                                 classes="cat,dog")
    assert result.class_info.names == ["background", "cat", "dog"]
    assert (read_mask(tmp_path / "out" / "a.png")[small] == 1).all()


# ---------------------------------------------------------------------------------------------
# LabelMe

def labelme_shape_to_mask(shape_type, points):
    """labelme's own `shape_to_mask` (labelme/utils/shape.py), for areas, with rectangle corners
    sorted (newer Pillow refuses unsorted ones)."""
    mask = Image.fromarray(np.zeros((H, W), dtype=np.uint8))
    draw = ImageDraw.Draw(mask)
    xy = [tuple(point) for point in points]
    if shape_type == "circle":
        (cx, cy), (px, py) = xy
        d = math.sqrt((cx - px) ** 2 + (cy - py) ** 2)
        draw.ellipse([cx - d, cy - d, cx + d, cy + d], outline=1, fill=1)
    elif shape_type == "rectangle":
        (x0, y0), (x1, y1) = xy
        draw.rectangle([min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)], outline=1, fill=1)
    else:
        draw.polygon(xy=xy, outline=1, fill=1)
    return np.array(mask, dtype=bool)


LABELME_SHAPES = [
    {"label": "road", "points": [[0.4, 10.6], [39, 12], [38.5, 29], [2, 28]],
     "shape_type": "polygon"},
    {"label": "car", "points": [[25.7, 20.2], [10.3, 14.8]], "shape_type": "rectangle"},
    {"label": "sign", "points": [[30, 6], [33.5, 8]], "shape_type": "circle"},
    {"label": "__ignore__", "points": [[1, 1], [8, 1], [8, 5]], "shape_type": "polygon"},
    {"label": "pole", "points": [[5, 5], [5, 25]], "shape_type": "line"},
    {"label": "pole", "points": [[9, 9]], "shape_type": "point"},
]


def labelme_file(path, image_path, shapes, image_data=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"version": "5.4.1", "flags": {}, "shapes": shapes,
                                "imagePath": image_path, "imageData": image_data,
                                "imageHeight": H, "imageWidth": W}))


def test_labelme_matches_labelme2voc_in_file_order(tmp_path):
    save_image(tmp_path / "images" / "street.png")
    labelme_file(tmp_path / "json" / "street.json", "../images/street.png", LABELME_SHAPES)
    result = convert_annotations(tmp_path / "json", tmp_path, tmp_path / "out",
                                 draw_order="file")
    assert result.formats == {str(tmp_path / "json"): "labelme"}
    names = result.class_info.names
    assert names == ["background", "car", "road", "sign"]   # sorted; lines name no class
    expected = np.zeros((H, W), np.uint8)
    for shape in LABELME_SHAPES[:4]:
        value = 255 if shape["label"] == "__ignore__" else names.index(shape["label"])
        expected[labelme_shape_to_mask(shape["shape_type"], shape["points"])] = value
    assert np.array_equal(read_mask(tmp_path / "out" / "street.png"), expected)
    assert result.stems == {"json": ["street"]}
    assert any("2 line/point region(s) skipped" in w for w in result.warnings)


def test_labelme_embedded_image_is_used_and_written(tmp_path):
    buffer = io.BytesIO()
    Image.new("RGB", (W, H), (10, 200, 30)).save(buffer, format="PNG")
    data = base64.b64encode(buffer.getvalue()).decode()
    labelme_file(tmp_path / "only.json", "only.png", LABELME_SHAPES[:1], image_data=data)
    result = convert_annotations(tmp_path / "only.json", tmp_path, tmp_path / "out")
    written = result.image_paths["only"]
    assert written == tmp_path / "out" / "images" / "only.png"
    assert written.read_bytes() == buffer.getvalue()
    expected = labelme_shape_to_mask("polygon", LABELME_SHAPES[0]["points"])
    assert np.array_equal(read_mask(tmp_path / "out" / "only.png"), expected.astype(np.uint8))


def test_labelme_embedded_image_path_with_relative_folders(tmp_path, monkeypatch):
    """The written image's path as the caller's folders give it (not taken inside the data
    folder)."""
    buffer = io.BytesIO()
    Image.new("RGB", (W, H), (10, 200, 30)).save(buffer, format="PNG")
    (tmp_path / "data").mkdir()
    labelme_file(tmp_path / "data" / "only.json", "only.png", LABELME_SHAPES[:1],
                 image_data=base64.b64encode(buffer.getvalue()).decode())
    monkeypatch.chdir(tmp_path)
    result = convert_annotations("data/only.json", "data", "out")
    assert result.image_paths["only"] == Path("out/images/only.png")
    assert result.mask_paths["only"] == Path("out/only.png")
    assert Path("out/images/only.png").read_bytes() == buffer.getvalue()


# ---------------------------------------------------------------------------------------------
# CVAT for images 1.1

def cvat_mask_rle(block):
    """CVAT's RLE of a bool block: row-major runs starting with 0s, written here."""
    flat = block.ravel().astype(np.int8)
    edges = np.concatenate([[0], np.flatnonzero(np.diff(flat)) + 1, [flat.size]])
    counts = np.diff(edges).tolist()
    return ", ".join(str(c) for c in (([0] + counts) if flat[0] else counts))


def cvat_xml(images_xml):
    return f"""<?xml version="1.0" encoding="utf-8"?>
<annotations>
  <version>1.1</version>
  <meta><task><labels>
    <label><name>road</name><color>#ff0000</color><type>any</type><attributes/></label>
    <label><name>car</name><color>#00ff00</color><type>any</type><attributes/></label>
    <label><name>tree</name><color>#0000ff</color><type>any</type><attributes/></label>
  </labels></task></meta>
  {images_xml}
</annotations>"""


def test_cvat_xml_converts_pixel_for_pixel(tmp_path):
    save_image(tmp_path / "images" / "frame_0.png")
    block = np.random.default_rng(6).random((5, 7)) < 0.5
    polygon = [1.5, 1.2, 20.3, 3.1, 18.2, 14.9, 2.2, 12.4]
    (tmp_path / "annotations.xml").write_text(cvat_xml(f"""
  <image id="0" name="frame_0.png" width="{W}" height="{H}">
    <tag label="car" source="manual"></tag>
    <mask label="tree" source="manual" occluded="0" rle="{cvat_mask_rle(block)}" left="30"
          top="2" width="7" height="5" z_order="3"></mask>
    <box label="car" source="manual" occluded="0" xtl="4" ytl="16" xbr="14" ybr="26"
         z_order="2"><attribute name="color">red</attribute></box>
    <polygon label="road" source="manual" occluded="0" z_order="1"
             points="{';'.join(f'{x},{y}' for x, y in zip(polygon[::2], polygon[1::2]))}"/>
    <ellipse label="tree" cx="30.5" cy="20" rx="6" ry="3" rotation="30" z_order="4"/>
    <polyline label="road" points="1,1;5,5" z_order="0"/>
  </image>"""))
    xml = tmp_path / "annotations.xml"
    result = convert_annotations(xml, tmp_path / "images", tmp_path / "out", draw_order="file")
    assert result.formats == {str(xml): "cvat"}
    assert result.class_info.names == ["background", "road", "car", "tree"]
    assert result.class_info.colors[1:] == [(255, 0, 0), (0, 255, 0), (0, 0, 255)]
    expected = np.zeros((H, W), np.uint8)
    expected[coco_reference_polygon(polygon)] = 1                   # z_order 1
    expected[16:26, 4:14] = 2                                        # box [4, 14) x [16, 26)
    expected[2:7, 30:37][block] = 3                                  # mask at left/top
    rr, cc = sk_ellipse(20 - 0.5, 30.5 - 0.5, 3, 6, shape=(H, W), rotation=-math.radians(30))
    expected[rr, cc] = 3                                             # ellipse, z_order 4
    assert np.array_equal(read_mask(tmp_path / "out" / "frame_0.png"), expected)


def test_cvat_rotated_box_is_the_turned_polygon(tmp_path):
    save_image(tmp_path / "a.png")
    (tmp_path / "a.xml").write_text(cvat_xml(f"""
  <image id="0" name="a.png" width="{W}" height="{H}" subset="Validation">
    <box label="car" xtl="10" ytl="10" xbr="30" ybr="18" rotation="30"/></image>"""))
    result = convert_annotations("a.xml", tmp_path, tmp_path / "out")
    c, s = math.cos(math.radians(30)), math.sin(math.radians(30))
    corners = [(x - 20, y - 14) for x, y in ((10, 10), (30, 10), (30, 18), (10, 18))]
    turned = [v for x, y in corners for v in (20 + x * c - y * s, 14 + x * s + y * c)]
    assert np.array_equal(read_mask(tmp_path / "out" / "a.png"),
                          np.where(coco_reference_polygon(turned), 2, 0))
    assert result.stems == {"val": ["a"]}


# ---------------------------------------------------------------------------------------------
# CVAT / VOC "Segmentation mask 1.1" folder

LABELMAP = """# label:color_rgb:parts:actions
background:0,0,0::
person:250,50,83::
bicycle:36,120,240::
"""


def make_mask_folder(root, rng):
    (root / "SegmentationClass").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "labelmap.txt").write_text(LABELMAP)
    truth = {}
    for stem in ("x1", "x2"):
        save_image(root / "JPEGImages" / f"{stem}.jpg", fmt="JPEG")
        index = rng.integers(0, 3, (H, W)).astype(np.uint8)
        colours = np.array([[0, 0, 0], [250, 50, 83], [36, 120, 240]], np.uint8)
        Image.fromarray(colours[index]).save(root / "SegmentationClass" / f"{stem}.png")
        truth[stem] = index
    (root / "ImageSets" / "Segmentation" / "default.txt").write_text("x1\nx2\n")
    return truth


def test_mask_folder_maps_colours_through_the_labelmap(tmp_path):
    truth = make_mask_folder(tmp_path / "export", np.random.default_rng(7))
    assert detect_format(tmp_path / "export") == "cvat-mask"
    result = convert_annotations(tmp_path / "export", tmp_path / "export", tmp_path / "out")
    assert result.class_info.names == ["background", "person", "bicycle"]
    assert result.class_info.colors[1] == (250, 50, 83)
    for stem, index in truth.items():
        assert np.array_equal(read_mask(tmp_path / "out" / f"{stem}.png"), index)
    assert result.stems == {"default": ["x1", "x2"]}
    assert result.image_paths["x1"] == tmp_path / "export" / "JPEGImages" / "x1.jpg"


# ---------------------------------------------------------------------------------------------
# Bad input: one DataError listing every problem, nothing written

def _coco_doc(root):
    path, _, _ = make_coco(root, np.random.default_rng(8))
    return path, json.loads(path.read_text())


def coco_damage(change):
    def build(root):
        path, doc = _coco_doc(root)
        change(doc, root)
        path.write_text(json.dumps(doc))
        return path, root / "images"
    return build


def _labelme(shapes=None, image_path="../images/street.png", data=None, save=True):
    def build(root):
        if save:
            save_image(root / "images" / "street.png")
        labelme_file(root / "json" / "street.json", image_path,
                     LABELME_SHAPES[:3] if shapes is None else shapes, image_data=data)
        return root / "json", root
    return build


def _cvat(body, image=True):
    def build(root):
        if image:
            save_image(root / "a.png")
        (root / "a.xml").write_text(cvat_xml(body) if body.lstrip().startswith("<image")
                                    else body)
        return root / "a.xml", root
    return build


def _mask_folder(change):
    def build(root):
        make_mask_folder(root / "export", np.random.default_rng(9))
        change(root / "export")
        return root / "export", root / "export"
    return build


def _two_bad_annotations(doc, root):
    doc["annotations"][0]["category_id"] = 99
    doc["annotations"][1]["segmentation"] = [[1, 2, 3]]


BAD = [   # (build(root) -> (input, data path), options, fragments of the one message)
    pytest.param(coco_damage(lambda d, r: (r / "images" / "a.png").unlink()), {},
                 ["a.png: ", "image file not found"], id="coco-missing-image"),
    pytest.param(coco_damage(_two_bad_annotations), {},
                 ["2 problem(s)", "annotation 1: category_id 99 is not in 'categories'",
                  "annotation 2: polygon 0 has an odd number of coordinates (3)"],
                 id="coco-unknown-category-and-malformed-polygon"),
    pytest.param(coco_damage(lambda d, r: d["images"][0].update(file_name="../a.png")), {},
                 ["'../a.png' leaves the data folder"], id="coco-path-escapes"),
    pytest.param(coco_damage(lambda d, r: d["annotations"][1]["segmentation"].update(
        counts=[5, 3])), {}, ["annotation 2", "the runs cover 8 pixels, but 30x40 has 1200"],
                 id="coco-rle-counts-wrong-length"),
    pytest.param(coco_damage(lambda d, r: d["annotations"][2]["segmentation"].update(
        counts="!!")), {}, ["annotation 3", "character '!' cannot occur in compressed counts"],
                 id="coco-rle-string-malformed"),
    pytest.param(coco_damage(lambda d, r: d["images"][0].update(width=80, height=60)), {},
                 ["a.png", "the annotations are for a 80x60 image, but the image file is 40x30"],
                 id="coco-size-disagrees-with-image"),
    pytest.param(_labelme(save=False), {}, ["street.json: images/street.png",
                                            "image file not found"], id="labelme-missing-image"),
    pytest.param(_labelme([{"label": "car", "points": [[1, 1], [2, 2], [3, 3]],
                            "shape_type": "rectangle"},
                           {"label": "car", "points": [[1, 1]], "shape_type": "spline"}]), {},
                 ["shape 0: a rectangle needs 2 points, got 3",
                  "shape 1: unknown shape_type 'spline'"], id="labelme-malformed-shapes"),
    pytest.param(_labelme(image_path="../../outside.png"), {},
                 ["'../../outside.png' leaves the data folder"], id="labelme-path-escapes"),
    pytest.param(_labelme(), {"classes": "road,car"},
                 ["region 2: unknown class 'sign' (classes: road, car"],
                 id="labelme-unknown-label"),
    pytest.param(_labelme(data="not base64!", save=True), {},
                 ["'imageData' is not valid base64"], id="labelme-bad-image-data"),
    pytest.param(_cvat("<annotations><image name='a.png'>"), {}, ["a.xml: not valid XML"],
                 id="cvat-malformed-xml"),
    pytest.param(_cvat(f"""<image name="a.png" width="{W}" height="{H}">
        <box label="car" xtl="1" ytl="1" xbr="5"/>
        <mask label="car" rle="1, 2" left="0" top="0" width="3" height="3"/>
        <polygon label="lorry" points="1,1;9,1;9,9"/></image>"""), {},
                 ["3 problem(s)", "<box> 0: has no 'ybr'", "<mask> 1: the runs cover 3 pixels, "
                  "but 3x3 has 9", "region 2: unknown class 'lorry'"], id="cvat-bad-shapes"),
    pytest.param(_cvat(f'<image name="../a.png" width="{W}" height="{H}"></image>'), {},
                 ["'../a.png' leaves the data folder"], id="cvat-path-escapes"),
    pytest.param(_cvat(cvat_xml('<track id="0" label="car"></track>'), image=False), {},
                 ["<track> elements (CVAT for video 1.1) are not read"], id="cvat-video-tracks"),
    pytest.param(_mask_folder(lambda f: Image.new("RGB", (W, H), (1, 2, 3)).save(
        f / "SegmentationClass" / "x2.png")), {},
                 ["SegmentationClass/x2.png: colour(s) (1, 2, 3) are not in labelmap.txt"],
                 id="mask-folder-unknown-colour"),
    pytest.param(_mask_folder(lambda f: (f / "labelmap.txt").unlink()), {},
                 ["labelmap.txt: classes file not found"], id="mask-folder-no-labelmap"),
    pytest.param(_mask_folder(lambda f: (f / "JPEGImages" / "x1.jpg").unlink()), {},
                 ["JPEGImages/x1.jpg: ", "image file not found"], id="mask-folder-missing-image"),
]


@pytest.mark.parametrize("build, options, fragments", BAD)
def test_bad_annotations_are_refused_and_nothing_is_written(tmp_path, build, options, fragments):
    source, data_path = build(tmp_path)
    with pytest.raises(DataError) as info:
        convert_annotations(source, data_path, tmp_path / "out", **options)
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert not (tmp_path / "out").exists()


def test_converter_script_lists_every_problem_and_exits_2(tmp_path, capsys, repo_root):
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "generate_gt_segmentation", repo_root / "utils" / "generate_gt_segmentation.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    path, _ = coco_damage(_two_bad_annotations)(tmp_path)
    code = script.main(["-p", str(tmp_path / "images"), "-j", str(path), "--format", "coco",
                        "--output-dir", str(tmp_path / "out")])
    error = capsys.readouterr().err
    assert code == 2 and error.startswith("error: 2 problem(s)")
    assert "category_id 99" in error and "odd number of coordinates" in error
    assert not (tmp_path / "out").exists()
    good = make_mask_folder(tmp_path / "export", np.random.default_rng(10))
    assert script.main(["-j", str(tmp_path / "export"), "-q"]) == 0
    assert np.array_equal(read_mask(tmp_path / "export" / "masks" / "x1.png"), good["x1"])


# ---------------------------------------------------------------------------------------------
# Dataset folders read directly (--data-format)

def make_voc_of_ones_own(root, rng, palette=False):
    """A VOC layout with five classes in labelmap.txt and an empty test.txt."""
    names = ["background", "wall", "floor", "door", "window", "lamp"]
    colours = [(0, 0, 0), (120, 120, 120), (80, 50, 50), (8, 255, 51), (230, 230, 230),
               (255, 6, 51)]
    (root / "SegmentationClass").mkdir(parents=True)
    (root / "ImageSets" / "Segmentation").mkdir(parents=True)
    (root / "labelmap.txt").write_text("".join(f"{n}:{r},{g},{b}::\n"
                                               for n, (r, g, b) in zip(names, colours)))
    truth = {}
    for stem in ("r1", "r2", "r3", "r4"):
        save_image(root / "JPEGImages" / f"{stem}.jpg", fmt="JPEG")
        index = rng.integers(0, 6, (H, W)).astype(np.uint8)
        if palette:
            picture = Image.fromarray(index, mode="P")
            picture.putpalette([v for c in colours for v in c])
        else:
            picture = Image.fromarray(np.array(colours, np.uint8)[index])
        picture.save(root / "SegmentationClass" / f"{stem}.png")
        truth[stem] = index
    lists = root / "ImageSets" / "Segmentation"
    (lists / "train.txt").write_text("r1\nr2\nr3\n")
    (lists / "val.txt").write_text("r4\n")
    (lists / "test.txt").write_text("")
    return names, truth


@pytest.mark.parametrize("palette", [False, True], ids=["rgb-masks", "palette-masks"])
def test_voc_layout_of_ones_own_trains_with_its_labelmap(tmp_path, capsys, palette):
    from fcn_keras.datasets import load_dataset

    names, truth = make_voc_of_ones_own(tmp_path, np.random.default_rng(11), palette)
    dataset = load_dataset(tmp_path)
    assert dataset.format == "voc" and dataset.classes.names == names
    assert "note: split 'test' is empty" in capsys.readouterr().err
    for sample in dataset.split("train") + dataset.split("val"):
        assert np.array_equal(read_mask(sample.mask), truth[sample.stem])
    with pytest.raises(DataError, match="split 'test' is empty"):
        dataset.split("test")
    assert load_dataset(tmp_path, data_format="cvat-mask").classes.names == names


def test_voc_layout_unknown_colour_names_file_and_colour(tmp_path):
    from fcn_keras.datasets import load_dataset

    make_voc_of_ones_own(tmp_path, np.random.default_rng(12))
    Image.new("RGB", (W, H), (7, 7, 7)).save(tmp_path / "SegmentationClass" / "r2.png")
    with pytest.raises(DataError) as info:
        load_dataset(tmp_path)
    assert "SegmentationClass/r2.png: colour(s) (7, 7, 7) are not in labelmap.txt" in \
        str(info.value)


def test_voc_layout_with_class_names_txt(tmp_path):
    from fcn_keras.datasets import load_dataset

    make_voc_of_ones_own(tmp_path, np.random.default_rng(13), palette=True)
    (tmp_path / "labelmap.txt").unlink()
    (tmp_path / "class_names.txt").write_text("_background_\nwall\nfloor\ndoor\nwindow\nlamp\n")
    dataset = load_dataset(tmp_path)
    assert dataset.classes.names == ["_background_", "wall", "floor", "door", "window", "lamp"]


def test_coco_labelme_and_cvat_folders_load_as_datasets(tmp_path):
    from fcn_keras.datasets import detect_format, load_dataset

    make_coco(tmp_path / "coco", np.random.default_rng(14))
    assert detect_format(tmp_path / "coco") == "coco"
    dataset = load_dataset(tmp_path / "coco")
    assert dataset.classes.names == ["background", "dog", "cat"]
    assert sorted(s.stem for s in dataset.split("train") + dataset.split("val")) == ["a", "b"]
    again = load_dataset(tmp_path / "coco")        # converted once, then re-used
    assert again.split("train")[0].mask.stat().st_mtime_ns == \
        dataset.split("train")[0].mask.stat().st_mtime_ns

    root = tmp_path / "labelme"
    for split in ("train", "val"):
        save_image(root / split / f"{split}_img.png")
        labelme_file(root / split / f"{split}_img.json", f"{split}_img.png", LABELME_SHAPES[:2])
    assert detect_format(root) == "labelme"
    dataset = load_dataset(root)
    assert [s.stem for s in dataset.split("val")] == ["val_img"]
    expected = labelme_shape_to_mask("polygon", LABELME_SHAPES[0]["points"]).astype(np.uint8) * 2
    expected[labelme_shape_to_mask("rectangle", LABELME_SHAPES[1]["points"])] = 1
    assert np.array_equal(read_mask(dataset.split("train")[0].mask), expected)

    save_image(tmp_path / "cvat" / "images" / "a.png")
    (tmp_path / "cvat" / "annotations.xml").write_text(cvat_xml(f"""
  <image id="0" name="a.png" width="{W}" height="{H}" subset="Train">
    <box label="car" xtl="4" ytl="16" xbr="14" ybr="26"/></image>"""))
    dataset = load_dataset(tmp_path / "cvat")
    assert dataset.format == "cvat" and dataset.classes.names[2] == "car"
    assert (read_mask(dataset.split("train")[0].mask)[16:26, 4:14] == 2).all()
