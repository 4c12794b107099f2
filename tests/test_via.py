"""VIA parsing (every flavour, classes, problems) and the rasteriser's pixel convention."""

import json
import math

import numpy as np
import pytest
from skimage.draw import ellipse as sk_ellipse
from skimage.draw import polygon as sk_polygon

from fcn_keras.annotations.rasterize import (
    degenerate_reason,
    ellipse_footprint,
    paint_order,
    polygon_footprint,
    rasterize,
    rect_footprint,
    region_area,
)
from fcn_keras.annotations.via import Region, filename_problem, load_via, parse_via
from fcn_keras.errors import DataError


def region2(shape, name="1", key="name", **params):
    return {"shape_attributes": {"name": shape, **params}, "region_attributes": {key: name}}


def square(x0=2, y0=2, x1=10, y1=8, name="1", key="name"):
    return region2("polygon", name, key, all_points_x=[x0, x1, x1, x0],
                   all_points_y=[y0, y0, y1, y1])


def entry2(filename, regions, size=100):
    return f"{filename}{size}", {"filename": filename, "size": size, "regions": regions,
                                 "file_attributes": {}}


def write(path, data):
    path.write_text(json.dumps(data))
    return path


def only(images):
    assert len(images) == 1
    return images[0]


def as_mask(fp, height, width):
    mask = np.zeros((height, width), dtype=np.uint8)
    if fp is not None:
        fp.paint(mask, 1)
    return mask


# ---------------------------------------------------------------------------------------------
# Flavours

def test_reads_via1_export_with_regions_dict(tmp_path):
    data = {"a.jpg1234": {
        "fileref": "", "size": 1234, "filename": "a.jpg", "base64_img_data": "",
        "file_attributes": {"scene": "kitchen"},
        "regions": {"1": region2("ellipse", "2", cx=5, cy=6, rx=3, ry=2),
                    "0": region2("circle", "1", cx=1.5, cy=2.5, r=4)}}}
    image = only(load_via(write(tmp_path / "v1.json", data)))
    assert image.filename == "a.jpg" and image.file_attributes == {"scene": "kitchen"}
    assert [r.shape for r in image.regions] == ["circle", "ellipse"]   # keys in numeric order
    assert [r.index for r in image.regions] == [0, 1]
    assert image.regions[1].params == {"cx": 5.0, "cy": 6.0, "rx": 3.0, "ry": 2.0, "theta": 0.0}
    assert [r.class_name for r in image.regions] == ["1", "2"]


def test_reads_via2_export_and_project_alike(tmp_path):
    entries = dict([entry2("a.jpg", [square(), region2("rect", "3", x=1, y=2, width=3,
                                                        height=4)]),
                    entry2("b.png", [])])
    export = load_via(write(tmp_path / "export.json", entries))
    project = load_via(write(tmp_path / "project.json", {
        "_via_settings": {}, "_via_img_metadata": entries, "_via_attributes": {"region": {},
                                                                                "file": {}},
        "_via_data_format_version": "2.0.10", "_via_image_id_list": list(entries)}))
    assert [i.filename for i in export] == ["a.jpg", "b.png"]
    assert [(r.shape, r.params, r.class_name) for r in export[0].regions] == \
        [(r.shape, r.params, r.class_name) for r in project[0].regions]
    assert export[0].regions[1].params == {"x": 1.0, "y": 2.0, "width": 3.0, "height": 4.0}
    assert export[1].regions == []


def via3_project():
    return {
        "project": {"pid": "__VIA_PROJECT_ID__", "vid_list": ["1", "2"]},
        "config": {"file": {"loc_prefix": {}}, "ui": {}},
        "attribute": {
            "1": {"aname": "Class", "anchor_id": "FILE1_Z0_XY1", "type": 3,
                  "options": {"0": "cup", "1": "bottle"}, "default_option_id": ""},
            "2": {"aname": "note", "anchor_id": "FILE1_Z0_XY0", "type": 1, "options": {}},
            "3": {"aname": "tags", "anchor_id": "FILE1_Z0_XY1", "type": 2,
                  "options": {"a": "lid", "b": "straw"}}},
        "file": {"1": {"fid": "1", "fname": "a.jpg", "type": 2, "loc": 1, "src": ""},
                 "2": {"fid": "2", "fname": "sub/b.jpg", "type": 2, "loc": 1, "src": ""}},
        "view": {"1": {"fid_list": ["1"]}, "2": {"fid_list": ["2"]}},
        "metadata": {
            "1_a": {"vid": "1", "flg": 0, "z": [], "xy": [7, 1, 1, 9, 1, 9, 7],
                    "av": {"1": "0"}},
            "1_b": {"vid": "1", "flg": 0, "z": [], "xy": [2, 2, 3, 4, 5], "av": {"1": "1"}},
            "1_c": {"vid": "1", "flg": 0, "z": [], "xy": [3, 5, 5, 2], "av": {"1": "0"}},
            "1_d": {"vid": "1", "flg": 0, "z": [], "xy": [4, 5, 5, 3, 2], "av": {"1": "0"}},
            "1_e": {"vid": "1", "flg": 0, "z": [], "xy": [1, 4, 4], "av": {}},
            "1_f": {"vid": "1", "flg": 0, "z": [], "xy": [5, 0, 0, 3, 3], "av": {}},
            "1_g": {"vid": "1", "flg": 0, "z": [], "xy": [6, 0, 0, 3, 3, 5, 1], "av": {}},
            "1_h": {"vid": "1", "flg": 0, "z": [], "xy": [8, 4, 1, 1, 3, 6, 4, 3, 7],
                    "av": {"1": "1"}},
            "1_i": {"vid": "1", "flg": 0, "z": [], "xy": [9, 0, 5, 5, 0, 10, 5],
                    "av": {"1": "0"}},
            "1_file": {"vid": "1", "flg": 0, "z": [], "xy": [], "av": {"2": "sunny"}},
            "1_time": {"vid": "1", "flg": 0, "z": [1.5, 2.0], "xy": [], "av": {"1": "0"}},
            "2_a": {"vid": "2", "flg": 0, "z": [], "xy": [2, 0, 0, 2, 2],
                    "av": {"1": "1", "3": "a"}},
        }}


def test_reads_via3_project(tmp_path):
    a, b = load_via(write(tmp_path / "v3.json", via3_project()))
    assert (a.filename, b.filename) == ("a.jpg", "sub/b.jpg")
    shapes = [r.shape for r in a.regions]
    assert shapes == ["polygon", "rect", "circle", "ellipse", "point", "polyline", "polyline",
                      "rect", "circle"]
    polygon, rect, circle, ellipse, _, line, _, extreme_rect, extreme_circle = a.regions
    assert polygon.params == {"all_points_x": [1.0, 9.0, 9.0], "all_points_y": [1.0, 1.0, 7.0]}
    assert rect.params == {"x": 2.0, "y": 3.0, "width": 4.0, "height": 5.0}
    assert circle.params == {"cx": 5.0, "cy": 5.0, "r": 2.0}
    assert ellipse.params == {"cx": 5.0, "cy": 5.0, "rx": 3.0, "ry": 2.0, "theta": 0.0}
    assert line.params == {"all_points_x": [0.0, 3.0], "all_points_y": [0.0, 3.0]}
    assert extreme_rect.params == {"x": 1.0, "y": 1.0, "width": 5.0, "height": 6.0}
    assert extreme_circle.params == pytest.approx({"cx": 5.0, "cy": 5.0, "r": 5.0})
    assert [r.class_name for r in a.regions] == ["cup", "bottle", "cup", "cup", None, None,
                                                 None, "bottle", "cup"]
    assert a.file_attributes == {"note": "sunny"}       # file-level metadata, not a region
    assert b.regions[0].attributes == {"Class": "bottle", "tags": {"lid": True}}
    assert only(load_via(tmp_path / "v3.json", attribute="tags")[1:]).regions[0].class_name \
        == "lid"


# ---------------------------------------------------------------------------------------------
# Classes

@pytest.mark.parametrize("attributes, name", [
    ({"Name": "1"}, "1"), ({"name": " cup "}, "cup"), ({"CLASS": "cup"}, "cup"),
    ({"label": 2}, "2"), ({"type": 3.0}, "3"), ({"category": {"cup": True, "can": False}}, "cup"),
    ({"other": "x"}, None), ({}, None), ({"name": ""}, None), ({"name": {}}, None),
])
def test_class_name_auto_detection(tmp_path, attributes, name):
    data = dict([entry2("a.jpg", [{"shape_attributes": {"name": "rect", "x": 0, "y": 0,
                                                         "width": 1, "height": 1},
                                    "region_attributes": attributes}])])
    region = only(load_via(write(tmp_path / "a.json", data))).regions[0]
    assert region.class_name == name and region.class_problem is None


def test_class_attribute_option_and_bad_values(tmp_path):
    regions = [square(name="cup", key="kind") | {"region_attributes": {"kind": "cup",
                                                                         "name": "9"}},
               square(name={"cup": True, "can": True}, key="kind"),
               square(name=[1, 2], key="kind"), square(name=True, key="kind")]
    image = only(load_via(write(tmp_path / "a.json", dict([entry2("a.jpg", regions)])),
                          attribute="Kind"))
    assert image.regions[0].class_name == "cup"
    assert "several options ticked" in image.regions[1].class_problem
    assert all(r.class_name is None and r.class_problem for r in image.regions[2:])


# ---------------------------------------------------------------------------------------------
# Problems

def test_all_problems_are_listed_in_one_error(tmp_path):
    data = dict([
        entry2("a.jpg", [region2("polygon", all_points_x=[1, 2, float("nan")],
                                 all_points_y=[1, 2, 3]),
                         region2("polygon", all_points_x=[1, 2], all_points_y=[1, 2, 3]),
                         region2("rect", x=1, y="abc", width=2, height=2),
                         region2("circle", cx=1, cy=1),
                         region2("star", cx=1, cy=1),
                         region2("circle", cx=1, cy=1, r=-2),
                         region2("ellipse", cx=1, cy=1, rx=2, ry=1, theta=float("inf")),
                         {"region_attributes": {}}, "not a region"]),
        entry2("../outside.jpg", []), entry2("/etc/passwd", []), entry2("C:\\x.jpg", []),
        entry2("b.jpg", "nope")])
    data["broken"] = 5
    data["nameless"] = {"regions": []}
    (tmp_path / "bad.json").write_text(json.dumps(data))   # json writes NaN/Infinity literals
    with pytest.raises(DataError) as info:
        load_via(tmp_path / "bad.json")
    message = str(info.value)
    assert message.startswith("15 problem(s)")
    for expected in ("a.jpg: region 0: all_points_x[2] is not a finite number",
                     "region 1: polygon has 2 x but 3 y", "region 2: y must be a number",
                     "region 3: circle has no 'r'", "region 4: unsupported shape 'star'",
                     "region 5: circle has a negative radius", "region 6: theta",
                     "region 7: has no 'shape_attributes'", "region 8: must be an object",
                     "'../outside.jpg' leaves the data folder", "'/etc/passwd' is an absolute",
                     "'C:\\x.jpg' is an absolute", "b.jpg: 'regions' must be a list",
                     "entry 'broken'", "entry 'nameless' has no 'filename'"):
        assert expected in message, expected


@pytest.mark.parametrize("text, expected", [
    ("{not json", "not valid JSON"), ("[1, 2]", "not a VIA file"), ("\xff\xfe", "not valid"),
])
def test_malformed_json_is_a_data_error(tmp_path, text, expected):
    path = tmp_path / "bad.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(DataError, match=expected):
        load_via(path)
    with pytest.raises(DataError, match="not found"):
        load_via(tmp_path / "missing.json")


@pytest.mark.parametrize("name, bad", [
    ("a.jpg", False), ("sub/dir/a.jpg", False), ("a..b.jpg", False), ("../a.jpg", True),
    ("sub/../../a.jpg", True), ("sub\\..\\a.jpg", True), ("/abs/a.jpg", True), ("", True),
    ("C:/a.jpg", True), ("http://example.com/a.jpg", True), ("a\x00.jpg", True),
])
def test_file_names_must_stay_in_the_data_folder(name, bad):
    assert (filename_problem(name) is not None) == bad


def test_via3_problems_are_collected():
    project = via3_project()
    project["metadata"]["bad_vid"] = {"vid": "9", "z": [], "xy": [2, 0, 0, 1, 1], "av": {}}
    project["metadata"]["bad_shape"] = {"vid": "1", "z": [], "xy": [42, 0, 0], "av": {}}
    project["metadata"]["bad_count"] = {"vid": "1", "z": [], "xy": [2, 0, 0, 1], "av": {}}
    project["file"]["3"] = {"fid": "3", "fname": "../x.jpg"}
    _, problems = parse_via(project, "v3.json")
    assert len(problems) == 4
    assert any("unknown view/file" in p for p in problems)
    assert any("unknown VIA 3 shape id" in p for p in problems)
    assert any("RECTANGLE needs 4 coordinates, got 3" in p for p in problems)
    assert any("leaves the data folder" in p for p in problems)


# ---------------------------------------------------------------------------------------------
# Rasterising

def test_polygon_matches_skimage_exactly():
    """Integer, half-integer and float vertices, inside and across the image border."""
    rng = np.random.default_rng(0)
    height, width = 30, 40
    for trial in range(600):
        n = int(rng.integers(3, 10))
        xs, ys = rng.uniform(-8, 48, n), rng.uniform(-8, 38, n)
        if trial % 3 == 0:
            xs, ys = np.round(xs), np.round(ys)
        elif trial % 3 == 1:
            xs, ys = np.round(xs * 2) / 2, np.round(ys * 2) / 2
        expected = np.zeros((height, width), dtype=np.uint8)
        rr, cc = sk_polygon(ys, xs, (height, width))
        expected[rr, cc] = 1
        got = as_mask(polygon_footprint(xs, ys, height, width), height, width)
        assert np.array_equal(got, expected), (xs.tolist(), ys.tolist())


def test_integer_square_includes_its_boundary_and_clips_outside_points():
    mask = as_mask(polygon_footprint([1, 4, 4, 1], [1, 1, 3, 3], 6, 6), 6, 6)
    assert mask.sum() == 4 * 3 and mask[1:4, 1:5].all()
    clipped = as_mask(polygon_footprint([-100, 3, 3, -100], [-50, -50, 2, 2], 6, 6), 6, 6)
    assert clipped.sum() == 4 * 3 and clipped[0:3, 0:4].all()
    assert polygon_footprint([10, 20, 20], [10, 10, 20], 6, 6) is None


def test_rect_is_half_open_and_clipped():
    mask = as_mask(rect_footprint(1, 2, 3, 2, 6, 8), 6, 8)
    assert mask.sum() == 6 and mask[2:4, 1:4].all()
    mask = as_mask(rect_footprint(0.5, 0.5, 2.0, 1.0, 6, 8), 6, 8)   # centres 1, 2 / row 1
    assert np.argwhere(mask).tolist() == [[1, 1], [1, 2]]
    assert as_mask(rect_footprint(-5, -5, 7, 7, 6, 8), 6, 8).sum() == 4
    assert rect_footprint(10, 10, 3, 3, 6, 8) is None


def test_circle_is_strictly_inside():
    mask = as_mask(ellipse_footprint(5, 5, 2, 2, 0.0, 11, 11), 11, 11)
    assert mask[5, 3] == 0 and mask[5, 4] == 1 and mask[7, 5] == 0    # radius 2 excludes (5,7)
    assert mask.sum() == 9 and mask[4:7, 4:7].all()    # distance 2 is on the circle: out


def canvas_ellipse_outline(cx, cy, rx, ry, theta, n=4000):
    """The outline the browser draws for ctx.ellipse(cx, cy, rx, ry, theta) on a y-down canvas."""
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    xs = cx + rx * np.cos(t) * np.cos(theta) - ry * np.sin(t) * np.sin(theta)
    ys = cy + rx * np.cos(t) * np.sin(theta) + ry * np.sin(t) * np.cos(theta)
    return xs, ys


@pytest.mark.parametrize("theta", [0.0, 0.5, -0.9, math.pi / 2, 2.5])
def test_ellipse_rotation_follows_via_canvas(theta):
    height, width = 60, 80
    cx, cy, rx, ry = 40.3, 29.6, 25.0, 8.0
    got = as_mask(ellipse_footprint(cx, cy, rx, ry, theta, height, width), height, width)
    outline = as_mask(polygon_footprint(*canvas_ellipse_outline(cx, cy, rx, ry, theta),
                                        height, width), height, width)
    assert np.count_nonzero(got != outline) <= 4        # only pixels grazing the outline
    # the rx axis points along (cos theta, sin theta): clockwise on screen for theta > 0
    x, y = cx + 20 * math.cos(theta), cy + 20 * math.sin(theta)
    assert got[round(y), round(x)] == 1
    if math.sin(2 * theta) != 0 and abs(math.sin(2 * theta)) > 0.5:
        x, y = cx + 20 * math.cos(theta), cy - 20 * math.sin(theta)
        assert got[round(y), round(x)] == 0
    rr, cc = sk_ellipse(cy, cx, ry, rx, (height, width), rotation=-theta)
    expected = np.zeros_like(got)
    expected[rr, cc] = 1
    assert np.count_nonzero(got != expected) <= 2       # skimage, up to float rounding


def test_degenerate_shapes_and_areas():
    def poly(xs, ys):
        return Region("polygon", {"all_points_x": xs, "all_points_y": ys}, "1", 0)

    assert degenerate_reason(poly([], [])) == "polygon with 0 point(s)"
    assert degenerate_reason(poly([1, 2], [1, 2])) == "polygon with 2 point(s)"
    assert degenerate_reason(poly([1, 2, 3], [1, 2, 3])) == "polygon with zero area"
    assert degenerate_reason(poly([0, 4, 4], [0, 0, 3])) is None
    assert region_area(poly([0, 4, 4], [0, 0, 3])) == 6
    assert degenerate_reason(Region("rect", {"x": 1, "y": 1, "width": 0, "height": 3},
                                    "1", 0)) == "rectangle with zero width or height"
    assert degenerate_reason(Region("circle", {"cx": 1, "cy": 1, "r": 0}, "1", 0))
    assert region_area(Region("ellipse", {"cx": 0, "cy": 0, "rx": 2, "ry": 1, "theta": 0},
                              "1", 0)) == pytest.approx(2 * math.pi)


def test_paint_order_area_versus_file():
    big = Region("rect", {"x": 0, "y": 0, "width": 10, "height": 10}, "1", 0)
    small = Region("rect", {"x": 2, "y": 2, "width": 2, "height": 2}, "2", 1)
    tie = Region("rect", {"x": 6, "y": 6, "width": 2, "height": 2}, "3", 2)
    assert paint_order([small, big, tie], "area") == [1, 0, 2]   # ties keep file order
    assert paint_order([small, big, tie], "file") == [0, 1, 2]
    by_area = rasterize([small, big], [2, 1], 10, 10, "area")
    by_file = rasterize([small, big], [2, 1], 10, 10, "file")
    assert by_area[3, 3] == 2 and by_file[3, 3] == 1 and by_area[8, 8] == 1
    with pytest.raises(ValueError):
        paint_order([big], "random")
