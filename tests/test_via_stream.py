"""Large VIA files converted one entry at a time (docs/bad-input.md, "Long input lists").

A VIA 1.x / 2.x file of `via.STREAM_BYTES` or more is never loaded whole: `stream.JSONStream`
walks it and the converter reads it twice (check, then write). These tests lower the limit to
0 so that small files take that path, and hold it to the whole-document path: the same images
and problems, masks, lists and messages; the document never built; memory that does not grow
with the annotations.
"""

import json
import os
import tracemalloc

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from test_fuzz_via import json_values, via2_document, via2_project

import fcn_keras.annotations as annotations
from fcn_keras.annotations import stream, via
from fcn_keras.annotations.convert import convert_via
from fcn_keras.annotations.records import read_json
from fcn_keras.errors import DataError

FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@pytest.fixture
def streamed(monkeypatch):
    """Every VIA 1.x / 2.x file is streamed, in windows of a few characters."""
    monkeypatch.setattr(via, "STREAM_BYTES", 0)
    monkeypatch.setattr(stream, "CHUNK_CHARS", 7)


# ---------------------------------------------------------------------------------------------
# JSONStream

def _walk(text: str, chunk: int):
    """The top-level value of `text`, objects and arrays walked member by member."""
    import io
    reader = stream.JSONStream(io.BytesIO(text.encode("utf-8")), chunk_chars=chunk)

    def walk():
        char = reader.peek()
        if char == "{":
            return {key: walk() for key in reader.members()}
        if char == "[":
            return [walk() for _ in reader.items()]
        return reader.value()
    value = walk()
    reader.end()
    return value


@FUZZ
@given(value=json_values, chunk=st.integers(1, 9), spaces=st.sampled_from([None, 0, 2]))
def test_the_stream_reads_what_json_loads_reads(value, chunk, spaces):
    text = json.dumps(value, indent=spaces)
    assert repr(_walk(text, chunk)) == repr(json.loads(text))   # repr: NaN is not equal to NaN


@pytest.mark.parametrize("text", ['{"a": 1', '{"a": 1} x', '{"a" 1}', '[1 2]', '{"a": 1,}',
                                  '{"a": 12345', '', '{"a": "b', '{1: 2}', '[1, 2]]'])
def test_the_stream_refuses_what_json_loads_refuses(text):
    with pytest.raises(ValueError):
        json.loads(text)
    for chunk in (1, 3, 100):
        with pytest.raises(stream.StreamError):
            _walk(text, chunk)


def test_a_number_cut_by_the_window_is_read_whole():
    assert _walk('{"a": [1, 23456789, 3.25e-7, true]}', 1) == {"a": [1, 23456789, 3.25e-7, True]}
    assert _walk("\ufeff" + '{"é": "ü"}', 1) == {"é": "ü"}


# ---------------------------------------------------------------------------------------------
# stream_via against parse_via

def _items(path):
    found = list(via.stream_via(path, path.name))
    return ([x for x in found if not isinstance(x, str)], [x for x in found if isinstance(x, str)])


@FUZZ
@given(document=st.one_of(via2_document(), via2_document(regions_as_dict=True), via2_project),
       chunk=st.integers(1, 50))
def test_stream_via_finds_what_parse_via_finds(tmp_path_factory, document, chunk):
    path = tmp_path_factory.mktemp("stream") / "v.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    stream.CHUNK_CHARS, saved = chunk, stream.CHUNK_CHARS
    try:
        images, problems = _items(path)
    finally:
        stream.CHUNK_CHARS = saved
    assert repr((images, problems)) == repr(via.parse_via(document, "v.json"))   # NaN != NaN


@FUZZ
@given(document=st.one_of(via2_document(), via2_project), cut=st.integers(1, 200),
       noise=st.sampled_from(["", "}", ",", "\x00", "x"]))
def test_a_broken_large_file_gets_the_usual_message(tmp_path_factory, document, cut, noise):
    path = tmp_path_factory.mktemp("broken") / "v.json"
    text = json.dumps(document)
    path.write_text(text[:max(1, len(text) - cut)] + noise, encoding="utf-8")
    try:
        read_json(path)
    except DataError as exc:
        with pytest.raises(DataError) as info:
            _items(path)
        assert str(info.value) == str(exc)


# ---------------------------------------------------------------------------------------------
# The converter

H, W = 24, 32


def _entry(name, regions):
    return {"filename": name, "size": 1, "file_attributes": {}, "regions": regions}


def _polygon(cls, xs=(2, 20, 10), ys=(2, 4, 20)):
    return {"shape_attributes": {"name": "polygon", "all_points_x": list(xs),
                                 "all_points_y": list(ys)}, "region_attributes": {"name": cls}}


def _folder(tmp_path, n=6, project=False):
    folder = tmp_path / "data"
    folder.mkdir()
    rng = np.random.default_rng(0)
    entries = {}
    for i in range(n):
        name = f"i{i:03d}.jpg"
        Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(folder / name)
        regions = [_polygon("cat"), _polygon("dog", (0, 30, 30), (0, 0, 23))][: 1 + i % 2]
        regions.append({"shape_attributes": {"name": "point", "cx": 3, "cy": 4},
                        "region_attributes": {"name": "cat"}})
        entries[f"{name}1"] = _entry(name, regions)
    document = ({"_via_settings": {"ui": {}}, "_via_img_metadata": entries,
                 "_via_attributes": {"region": {}}, "_via_image_id_list": list(entries)}
                if project else entries)
    (folder / "v.json").write_text(json.dumps(document))
    return folder


def _outputs(folder):
    return {p.name: p.read_bytes() for p in sorted((folder / "masks").iterdir())}


def _convert(folder, **options):
    try:
        result = convert_via("v.json", folder, **options)
    except DataError as exc:
        return str(exc)
    return (dict(result.stems), dict(result.mask_paths), dict(result.image_paths),
            result.warnings, result.skipped_missing, _outputs(folder))


def _both(folder, monkeypatch, **options):
    """(whole-document result, streamed result) of one conversion; the masks folder is
    removed in between."""
    import shutil
    whole = _convert(folder, **options)
    shutil.rmtree(folder / "masks", ignore_errors=True)
    with monkeypatch.context() as patch:
        patch.setattr(via, "STREAM_BYTES", 0)
        patch.setattr(stream, "CHUNK_CHARS", 64)
        streamed_result = _convert(folder, **options)
    return whole, streamed_result


@pytest.mark.parametrize("project", [False, True], ids=["export", "project"])
def test_streamed_conversion_writes_what_the_whole_document_gives(tmp_path, monkeypatch,
                                                                  project):
    folder = _folder(tmp_path, project=project)
    whole, streamed_result = _both(folder, monkeypatch)
    assert isinstance(whole, tuple) and whole == streamed_result
    assert whole[0] == {"v": [f"i{i:03d}" for i in range(6)]}
    assert "6 line/point region(s) skipped" in whole[3][0]


def test_streamed_conversion_reports_the_same_problems(tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    document = json.loads((folder / "v.json").read_text())
    document["i001.jpg1"]["regions"].append({**_polygon("x"), "region_attributes": {}})
    document["again"] = _entry("i002.jpg", [])                               # listed twice
    document["clash"] = _entry("i003.png", [])                               # same mask
    document["bad"] = _entry("i004.jpg", [{"shape_attributes": {"name": "hexagon"}}])
    document["gone"] = _entry("gone.jpg", [_polygon("bird")])                # missing image
    (folder / "i005.jpg").write_text("not an image")
    (folder / "v.json").write_text(json.dumps(document))
    whole, streamed_result = _both(folder, monkeypatch, classes="cat,dog")
    assert isinstance(whole, str) and whole == streamed_result
    for text in ("listed twice", "would overwrite", "hexagon", "no class name", "'bird'",
                 "gone.jpg: image file not found", "i005.jpg: not a readable image"):
        assert text in whole
    assert not (folder / "masks").exists()
    whole, streamed_result = _both(folder, monkeypatch, skip_missing=True)   # still refused
    assert whole == streamed_result


def test_skipped_images_and_a_changed_class_list(tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    (folder / "i002.jpg").unlink()
    whole, streamed_result = _both(folder, monkeypatch, skip_missing=True, classes="dog,cat")
    assert isinstance(whole, tuple) and whole == streamed_result
    assert whole[4] == 1 and "i002" not in whole[1]


def test_the_file_is_read_twice_and_never_whole(tmp_path, monkeypatch, streamed):
    folder = _folder(tmp_path)
    passes = []
    real = via.stream_via

    def counted(*args, **kwargs):
        passes.append(args[0])
        return real(*args, **kwargs)

    def refused(path):
        raise AssertionError(f"{path} loaded whole")
    monkeypatch.setattr(via, "stream_via", counted)
    monkeypatch.setattr(annotations, "read_json", refused)
    result = convert_via("v.json", folder)
    assert len(passes) == 2 and len(result.mask_paths) == 6
    assert result.mask_paths["i001"] == folder / "masks" / "i001.png"
    assert result.image_paths["i001"] == folder / "i001.jpg"
    passes.clear()
    with pytest.raises(DataError, match="'dog'"):          # one more pass names the regions
        convert_via("v.json", folder, output_dir=folder / "other", classes="cat")
    assert len(passes) == 2


def test_a_file_changed_between_the_passes_is_refused(tmp_path, monkeypatch, streamed):
    folder = _folder(tmp_path)
    import fcn_keras.annotations.convert as convert
    real = convert._check

    def check_then_edit(*args, **kwargs):
        checked = real(*args, **kwargs)
        path = folder / "v.json"
        path.write_text(path.read_text().replace("cat", "dog"))
        os.utime(path, ns=(0, 0))
        return checked
    monkeypatch.setattr(convert, "_check", check_then_edit)
    with pytest.raises(DataError, match="changed while it was being converted"):
        convert_via("v.json", folder)
    assert not list((folder / "masks").glob("*.png"))


def test_a_late_json_error_is_named_and_nothing_is_written(tmp_path, streamed):
    folder = _folder(tmp_path)
    path = folder / "v.json"
    path.write_text(path.read_text()[:-40])
    with pytest.raises(DataError) as info:
        convert_via("v.json", folder)
    message = str(info.value)
    with pytest.raises(DataError) as whole:
        read_json(path)
    assert str(whole.value) in message
    assert not (folder / "masks").exists()


def _checking_peak(folder, n, monkeypatch, stream_bytes):
    """Python's peak while converting a file of `n` one-polygon entries whose last image is
    missing (the conversion stops after the checks, as a 100,000-entry check would)."""
    document = {f"i{i}.jpg1": _entry(f"i{i}.jpg", [_polygon("cat")]) for i in range(n)}
    (folder / "v.json").write_text(json.dumps(document))
    for i in range(n - 1):
        if not (folder / f"i{i}.jpg").exists():
            os.link(folder / "src.jpg", folder / f"i{i}.jpg")
    (folder / f"i{n - 1}.jpg").unlink(missing_ok=True)
    monkeypatch.setattr(via, "STREAM_BYTES", stream_bytes)
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match=f"i{n - 1}.jpg: image file not found"):
            convert_via("v.json", folder)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_checking_memory_does_not_grow_with_the_annotations(tmp_path, monkeypatch):
    """Per entry, the whole document costs about 1.3 KB at the peak; streamed, nothing grows
    but the names' hashes (16 bytes) and what a pass learns of each image (9 bytes), under the
    allocator's granularity (tracemalloc: deterministic)."""
    import fcn_keras.annotations.convert as convert
    monkeypatch.setattr(convert, "FULL_CHECK_LIMIT", 20)   # what is held for these two is
    monkeypatch.setattr(stream, "CHUNK_CHARS", 1 << 14)    # bounded; here, below the files
    folder = tmp_path / "data"
    folder.mkdir()
    Image.new("RGB", (W, H), (9, 99, 199)).save(folder / "src.jpg")
    small, large = 500, 2500
    per_entry = {}
    for name, limit in (("whole", 2 ** 40), ("streamed", 0)):
        peaks = [_checking_peak(folder, n, monkeypatch, limit) for n in (small, large)]
        per_entry[name] = (peaks[1] - peaks[0]) / (large - small)
    assert per_entry["whole"] > 800, per_entry
    assert per_entry["streamed"] < 50, per_entry


@pytest.mark.parametrize("stream_bytes", [0, 2 ** 40], ids=["streamed", "whole"])
def test_names_with_one_hash_are_compared_themselves(tmp_path, monkeypatch, stream_bytes):
    """Names are first compared by their hashes; when a hash repeats, the check is made again
    on the names: images whose hashes collide but whose names differ all convert, and a real
    clash is still reported once."""
    import fcn_keras.annotations.convert as convert
    folder = _folder(tmp_path)
    monkeypatch.setattr(via, "STREAM_BYTES", stream_bytes)
    monkeypatch.setattr(convert, "hash", lambda text: 7, raising=False)   # every name collides
    result = convert_via("v.json", folder)
    assert sorted(result.mask_paths) == [f"i{i:03d}" for i in range(6)]
    document = json.loads((folder / "v.json").read_text())
    document["again"] = _entry("i002.jpg", [])
    (folder / "v.json").write_text(json.dumps(document))
    with pytest.raises(DataError) as info:
        convert_via("v.json", folder, output_dir=folder / "other")
    assert str(info.value).count("listed twice") == 1 and "1 problem(s)" in str(info.value)
