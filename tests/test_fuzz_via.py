"""Fuzzing the VIA reader and converter: any input converts or raises DataError, nothing else.

tests/test_convert.py fuzzes 2.x-shaped documents through the converter; this file adds raw
text (broken and truncated JSON), VIA 1.x region dicts, 2.x project files, 3.x projects, random
values in every slot of every shape, and odd class names and keys.
"""

import json
import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from fcn_keras.annotations.convert import convert_via
from fcn_keras.annotations.via import load_via, parse_via
from fcn_keras.errors import DataError

FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
IMAGES = {"a.jpg": (12, 9), "b.png": (7, 5)}

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=6)
           | st.sampled_from(["1", "2", "cat", "background", "nan", "1e400", "-0", "²", "٣",
                              "1" * 5000, "", " ", "../a.jpg", "a.jpg"]))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(
    st.text(max_size=5) | st.sampled_from(["name", "filename", "regions", "0", "²"]), inner,
    max_size=4), max_leaves=16)
coordinate = st.one_of(st.integers(-30, 40), st.floats(-50, 50), st.floats(),
                       st.sampled_from([1e9, -1e9, 1e9 + 1, 1e300, -0.0, 2**64, "3", "x", None]))
class_value = st.one_of(st.sampled_from(["1", "2", "3", "cat", "dog", "background", "٣",
                                         "1" * 5000]),
                        st.dictionaries(st.sampled_from(["cat", "dog", "1"]),
                                        st.sampled_from([True, False, "true", None]), max_size=3),
                        json_values)
filename = st.sampled_from(["a.jpg", "b.png", "missing.jpg", "../a.jpg", "/a.jpg", "C:\\a.jpg",
                            "http://x/a.jpg", "", ".", "a.jpg/", "sub/../a.jpg", "a\x00.jpg"])


def _shape2(name, keys):
    return st.fixed_dictionaries({"name": st.just(name)},
                                 optional={k: coordinate for k in keys})


shape_attributes = st.one_of(
    st.fixed_dictionaries({"name": st.sampled_from(["polygon", "polyline", "POLYGON"]),
                           "all_points_x": st.lists(coordinate, max_size=6),
                           "all_points_y": st.lists(coordinate, max_size=6)}),
    _shape2("rect", ("x", "y", "width", "height")),
    _shape2("circle", ("cx", "cy", "r")),
    _shape2("ellipse", ("cx", "cy", "rx", "ry", "theta")),
    _shape2("point", ("cx", "cy")),
    st.fixed_dictionaries({"name": st.sampled_from(["triangle", "", None, 3])}),
    json_values)
region2 = st.fixed_dictionaries(
    {"shape_attributes": shape_attributes},
    optional={"region_attributes": st.one_of(
        st.fixed_dictionaries({}, optional={"name": class_value, "Class": class_value,
                                            "type": class_value}), json_values)})


@st.composite
def entry2(draw, regions_as_dict=False):
    regions = draw(st.lists(region2 | json_values, max_size=4))
    if regions_as_dict:   # VIA 1.x: {"0": {...}, "1": {...}}; keys are not always tidy
        keys = draw(st.lists(st.sampled_from(["0", "1", "2", "10", "²", "a", "1" * 5000]),
                             min_size=len(regions), max_size=len(regions), unique=True))
        regions = dict(zip(keys, regions))
    entry = {"filename": draw(filename | json_values), "size": draw(scalars),
             "regions": draw(st.just(regions) | json_values),
             "file_attributes": draw(json_values)}
    if regions_as_dict:
        entry.update(fileref="", base64_img_data="")
    return entry


def via2_document(regions_as_dict=False):
    return st.dictionaries(st.text(max_size=5), entry2(regions_as_dict) | json_values,
                           max_size=3)


via2_project = st.fixed_dictionaries(
    {"_via_img_metadata": via2_document() | json_values},
    optional={"_via_settings": json_values, "_via_attributes": json_values,
              "_via_image_id_list": json_values})

via3_xy = st.one_of(
    st.tuples(st.integers(0, 10) | st.sampled_from([1.0, 7.5, True, "7", None]),
              st.lists(coordinate, max_size=8)).map(lambda t: [t[0], *t[1]]),
    json_values)
via3_metadata = st.fixed_dictionaries(
    {"vid": st.sampled_from(["1", "2", "9", 1, None]), "xy": via3_xy},
    optional={"z": st.just([]) | st.lists(coordinate, max_size=2) | json_values,
              "av": st.dictionaries(st.sampled_from(["1", "2", "x"]), class_value, max_size=2)
              | json_values,
              "flg": scalars})
via3_attribute = st.fixed_dictionaries(
    {"aname": st.sampled_from(["name", "class", "other"]) | json_values,
     "type": st.sampled_from([1, 2, 3, 4]) | json_values},
    optional={"options": st.dictionaries(st.sampled_from(["0", "1", "2"]),
                                         st.sampled_from(["cat", "dog", ""]) | json_values,
                                         max_size=3) | json_values})
via3_project = st.fixed_dictionaries({
    "project": json_values, "config": json_values,
    "attribute": st.dictionaries(st.sampled_from(["1", "2"]), via3_attribute | json_values,
                                 max_size=2) | json_values,
    "file": st.dictionaries(st.sampled_from(["1", "2", "3"]), st.fixed_dictionaries(
        {"fid": scalars, "fname": filename | json_values, "type": scalars}) | json_values,
        max_size=3) | json_values,
    "view": st.dictionaries(st.sampled_from(["1", "2"]), st.fixed_dictionaries(
        {"fid_list": st.lists(st.sampled_from(["1", "2", "3", 1]) | json_values, max_size=2)
         | json_values}) | json_values, max_size=2) | json_values,
    "metadata": st.dictionaries(st.text(max_size=4), via3_metadata | json_values, max_size=4)
    | json_values,
})
documents = st.one_of(via2_document(), via2_document(regions_as_dict=True), via2_project,
                      via3_project, json_values)


def _folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz")
    for name, size in IMAGES.items():
        Image.new("RGB", size, (9, 99, 199)).save(folder / name)
    return folder


def _check_converted(result):
    for stem, path in result.mask_paths.items():
        with Image.open(path) as mask:
            assert mask.mode == "P"
            assert mask.size == IMAGES[result.image_paths[stem].name]


@FUZZ
@given(document=documents)
def test_any_via_document_parses_or_lists_problems(document):
    images, problems = parse_via(document, "fuzz.json")
    assert all(isinstance(p, str) and p for p in problems)
    for image in images:
        for region in image.regions:
            for value in region.params.values():
                values = value if isinstance(value, list) else [value]
                assert all(isinstance(v, float) and math.isfinite(v) for v in values)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(document=documents, attribute=st.none() | st.sampled_from(["name", "Class", "x"]),
       classes=st.none() | st.sampled_from(["cat,dog", "1,2,3", "background,cat"]))
def test_any_via_document_converts_or_raises_data_error(tmp_path_factory, document, attribute,
                                                        classes):
    folder = _folder(tmp_path_factory)
    (folder / "v.json").write_text(json.dumps(document), encoding="utf-8")
    try:
        result = convert_via("v.json", folder, attribute=attribute, classes=classes)
    except DataError as exc:
        assert str(exc)
        assert not (folder / "masks").exists()   # nothing written unless all checks out
        return
    _check_converted(result)


@FUZZ
@given(document=documents, cut=st.integers(0, 400),
       noise=st.sampled_from(["", "}", "]]", ",", "\x00", "\ufeff", "NaN", "\udcff"]))
def test_broken_and_truncated_json_text_raises_data_error(tmp_path_factory, document, cut,
                                                          noise):
    """Text that is not UTF-8 JSON, or JSON that is no valid VIA file, raises a DataError naming
    the file; text that still reads as a valid VIA file (a cut of nothing, or noise that closes
    what the cut removed) gives the images of the parsed document."""
    folder = _folder(tmp_path_factory)
    text = json.dumps(document)
    text = text[:len(text) - cut] + noise if cut else text + noise
    raw = text.encode("utf-8", "surrogatepass")
    (folder / "v.json").write_bytes(raw)
    try:
        parsed = json.loads(raw.decode("utf-8-sig"))
    except ValueError:   # not UTF-8 (UnicodeDecodeError) or not JSON (JSONDecodeError)
        readable, images = False, None
    else:
        images, problems = parse_via(parsed, "v.json")
        readable = not problems
    if readable:
        assert load_via(folder / "v.json") == images
    else:
        with pytest.raises(DataError, match="v.json"):
            load_via(folder / "v.json")


@FUZZ
@given(shape=st.sampled_from(["polygon", "rect", "circle", "ellipse"]),
       values=st.lists(st.floats(-1e9, 1e9) | st.floats(-40, 40) | st.integers(-40, 40),
                       min_size=5, max_size=10))
def test_random_coordinates_always_give_a_mask_of_the_image_size(tmp_path_factory, shape,
                                                                  values):
    folder = _folder(tmp_path_factory)
    keys = {"rect": ("x", "y", "width", "height"), "circle": ("cx", "cy", "r"),
            "ellipse": ("cx", "cy", "rx", "ry", "theta")}
    if shape == "polygon":
        attrs = {"name": shape, "all_points_x": values[0::2], "all_points_y": values[1::2]}
        attrs["all_points_y"] = attrs["all_points_y"][:len(attrs["all_points_x"])]
        attrs["all_points_x"] = attrs["all_points_x"][:len(attrs["all_points_y"])]
    else:
        attrs = {"name": shape, **dict(zip(keys[shape], values))}
    document = {"a.jpg1": {"filename": "a.jpg", "size": 1, "file_attributes": {},
                           "regions": [{"shape_attributes": attrs,
                                        "region_attributes": {"name": "1"}}]}}
    (folder / "v.json").write_text(json.dumps(document))
    try:
        result = convert_via("v.json", folder)
    except DataError as exc:   # negative radii only
        assert "negative radius" in str(exc)
        return
    _check_converted(result)
