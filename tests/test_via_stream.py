"""Large VIA 1.x/2.x files are read entry by entry (`annotations.via_stream`, ijson): the same
images and problems as loading the file whole, other formats still recognised, a broken file
refused before anything is written."""

import codecs
import json

import numpy as np
import pytest
from PIL import Image

from fcn_keras.annotations import read_source, via_stream
from fcn_keras.annotations.convert import convert_via
from fcn_keras.annotations.records import Source
from fcn_keras.annotations.via import load_via
from fcn_keras.annotations.via_stream import StreamedVia, streamable
from fcn_keras.errors import DataError

pytest.importorskip("ijson")


def region(shape, name="cat", **params):
    return {"shape_attributes": {"name": shape, **params}, "region_attributes": {"name": name}}


def entries(n=3):
    found = {}
    for i in range(n):
        name = f"i{i:03d}.png"
        found[f"{name}{100 + i}"] = {
            "filename": name, "size": 100 + i, "file_attributes": {"k": i},
            "regions": [region("polygon", all_points_x=[1, 9.5, 5], all_points_y=[1, 2, 9]),
                        region("rect", "dog", x=1, y=2, width=3, height=4)]}
    return found


def with_problems():
    data = entries(2)
    data["i000.png100"]["regions"].append(region("circle", cx=1, cy=1))      # no r
    data["i001.png101"]["regions"] = "nope"
    data["broken"] = 5
    data["nameless"] = {"regions": []}
    data["v1.jpg7"] = {"filename": "v1.jpg", "size": 7, "regions": {
        "1": region("ellipse", "dog", cx=5, cy=6, rx=3, ry=2),
        "0": region("circle", cx=1.5, cy=2.5, r=4)}}                          # VIA 1.x dict
    data["../out.jpg1"] = {"filename": "../out.jpg", "regions": []}
    return data


def project(metadata):
    return {"_via_settings": {"ui": {"a.b": 1}}, "_via_img_metadata": metadata,
            "_via_attributes": {"region": {}, "file": {}}, "_via_image_id_list": list(metadata)}


@pytest.fixture
def stream_all(monkeypatch):
    monkeypatch.setattr(via_stream, "STREAM_BYTES", 0)


def loaded_and_streamed(path, monkeypatch):
    """`read_source` of `path` loaded whole, then streamed."""
    source = Source(path, path.parent, None)
    whole = read_source(source)
    monkeypatch.setattr(via_stream, "STREAM_BYTES", 0)
    assert isinstance(streamable(path, "auto"), StreamedVia)
    return whole, read_source(source)


@pytest.mark.parametrize("document", [entries(), with_problems(), project(entries()),
                                      project(with_problems()), {}, project({})],
                         ids=["export", "problems", "project", "project-problems", "empty",
                              "empty-project"])
def test_streamed_reads_what_loading_whole_reads(tmp_path, monkeypatch, document):
    path = tmp_path / "v.json"
    path.write_text(json.dumps(document))
    (fmt, whole), (fmt_streamed, streamed) = loaded_and_streamed(path, monkeypatch)
    assert fmt == fmt_streamed == "via"
    assert streamed.images == whole.images
    assert streamed.problems == whole.problems


def test_metadata_that_is_not_an_object(tmp_path, monkeypatch):
    path = tmp_path / "v.json"
    path.write_text(json.dumps(project([1, 2])))
    (_, whole), (_, streamed) = loaded_and_streamed(path, monkeypatch)
    assert streamed.problems == whole.problems == ["v.json: '_via_img_metadata' must be an object"]


@pytest.mark.parametrize("document, fmt", [
    ({"images": [], "annotations": [], "categories": []}, "coco"),
    ({"shapes": [], "imagePath": "a.jpg", "imageHeight": 4, "imageWidth": 4}, "labelme"),
    ({"project": {}, "config": {}, "attribute": {}, "file": {}, "metadata": {}, "view": {}},
     "via"),
])
def test_other_formats_are_still_loaded_whole(tmp_path, stream_all, document, fmt):
    path = tmp_path / "a.json"
    path.write_text(json.dumps(document))
    assert streamable(path, "auto") is None
    assert read_source(Source(path, tmp_path, None))[0] == fmt


def test_a_byte_order_mark_is_skipped(tmp_path, stream_all):
    path = tmp_path / "v.json"
    path.write_bytes(codecs.BOM_UTF8 + json.dumps(entries(2)).encode())
    assert [i.filename for i in load_via(path)] == ["i000.png", "i001.png"]


@pytest.mark.parametrize("text", ['{"a.jpg1": {"filename": "a.jpg", "regions": [',
                                  '{"a": NaN}', "", '{"a": 1} trailing', "\xff\xfe{}"])
def test_broken_json_is_refused_naming_the_file(tmp_path, stream_all, text):
    path = tmp_path / "v.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(DataError, match=r"v\.json: not valid JSON"):
        load_via(path)


def test_a_broken_large_file_writes_nothing(tmp_path, stream_all):
    Image.fromarray(np.zeros((12, 16, 3), np.uint8)).save(tmp_path / "i000.png")
    text = json.dumps(entries(1))
    (tmp_path / "v.json").write_text(text[:-5])    # cut inside the last entry
    with pytest.raises(DataError, match="not valid JSON"):
        convert_via("v.json", tmp_path)
    assert not (tmp_path / "masks").exists()
    (tmp_path / "v.json").write_text(text)
    result = convert_via("v.json", tmp_path)
    mask = np.asarray(Image.open(result.mask_paths["i000"]))
    assert mask.shape == (12, 16) and set(np.unique(mask)) == {0, 1, 2}


def test_without_ijson_every_file_is_loaded_whole(tmp_path, stream_all, monkeypatch):
    path = tmp_path / "v.json"
    path.write_text(json.dumps(entries(2)))
    monkeypatch.setattr(via_stream, "ijson_module", lambda: None)
    assert streamable(path, "auto") is None
    assert len(load_via(path)) == 2
