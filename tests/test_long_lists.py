"""Long input lists (docs/bad-input.md, "Long input lists"): a split of more than
`FULL_CHECK_LIMIT` samples gets cheap checks on every entry at load time (the file exists and
is not empty, from one directory listing per folder) and the full per-file checks on an evenly
spread subset; the input pipeline checks every other file as it reads it and names it.

The limit is lowered here so that a split of a few samples is "long"; the timing at 100,000
entries is `benchmarks/long_lists.py`'s.
"""

import json

import numpy as np
import pytest
from helpers import make_folder_dataset
from PIL import Image

import fcn_keras.datasets as datasets
from fcn_keras.annotations.convert import convert_via
from fcn_keras.datasets import checks, load_dataset
from fcn_keras.errors import DataError

H, W = 24, 32
LIMIT = 3   # the lowered FULL_CHECK_LIMIT: 3 of the 9 training samples are opened


@pytest.fixture
def root(tmp_path, monkeypatch):
    monkeypatch.setattr(checks, "FULL_CHECK_LIMIT", LIMIT)
    monkeypatch.setattr(datasets, "MASK_CHECK_LIMIT", LIMIT)
    return make_folder_dataset(tmp_path / "data", n_train=9, n_val=1, n_test=1, height=H,
                               width=W)


def unchecked(root) -> list[str]:
    """The training stems whose files validation does not open."""
    stems = (root / "train.txt").read_text().split()
    opened = set(checks.spread(stems, LIMIT))
    assert len(opened) == LIMIT
    return [stem for stem in stems if stem not in opened]


def assert_names(exc_info, *fragments):
    message = str(exc_info.value)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in:\n{message}"


def test_a_long_split_opens_only_an_evenly_spread_subset(root, monkeypatch):
    opened = []

    def counting(path, pipeline=True):
        opened.append(path)
        return real(path, pipeline)
    real = checks.check_image
    monkeypatch.setattr(checks, "check_image", counting)
    dataset = load_dataset(root)
    assert dataset.deferred == {"train"}
    assert len(dataset.split("train")) == 9
    # 3 training samples and the 1 of val and of test, each an image and a mask
    assert len(opened) == 2 * (LIMIT + 2)
    assert checks.spread(list(range(9)), 3) == [0, 3, 6]
    assert checks.spread(list(range(2)), 3) == [0, 1]


def test_missing_and_empty_files_of_a_long_split_are_all_refused_at_load(root):
    first, second, third, fourth = unchecked(root)[:4]
    (root / "images" / f"{first}.png").unlink()
    (root / "masks" / f"{second}.png").unlink()
    (root / "images" / f"{third}.png").write_bytes(b"")
    (root / "masks" / f"{fourth}.png").write_bytes(b"")
    with pytest.raises(DataError) as info:
        load_dataset(root)
    assert_names(info, "4 problem(s)", f"images/{first}.*: image not found",
                 f"masks/{second}.png: mask file not found",
                 f"images/{third}.png: empty image file (0 bytes)",
                 f"masks/{fourth}.png: empty image file (0 bytes)")


def test_a_problem_of_every_file_shows_in_the_spread_subset(root):
    for path in (root / "masks").glob("*.png"):   # RGB masks throughout
        Image.new("RGB", (W, H)).save(path)
    with pytest.raises(DataError) as info:
        load_dataset(root)
    assert_names(info, "mask has mode RGB", "5 problem(s)")   # 3 of train, val's, test's


def _text(path):
    path.write_text("this is not an image\n")


def _truncated(path):
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * 0.9)])


def _wide_mask(path):
    Image.new("L", (W + 1, H)).save(path)


def _rgb_mask(path):
    Image.new("RGB", (W, H), (255, 0, 0)).save(path)


PIPELINE_CHECKED = [   # (folder, damage(path), what the error says)
    pytest.param("images", _text, "not a readable image", id="image-text"),
    pytest.param("images", _truncated, "Truncated File Read",
                 id="image-truncated-png"),
    pytest.param("masks", _wide_mask, "mask is 33x24 but image", id="mask-wrong-size"),
    pytest.param("masks", _rgb_mask, "mask has mode RGB", id="mask-rgb"),
]


@pytest.mark.parametrize("folder, damage, fragment", PIPELINE_CHECKED)
def test_what_validation_leaves_is_named_by_the_pipeline(root, folder, damage, fragment):
    import tensorflow as tf

    from fcn_keras import pipeline
    from fcn_keras.pipeline import (
        PIPELINE_ERRORS,
        PIPELINE_FAILURES,
        DataGenerator,
        PipelineOptions,
    )
    pipeline._CHECKED_PAIRS.clear()   # the same tmp paths may have passed in another test
    stem = unchecked(root)[-1]
    damage(root / folder / f"{stem}.png")
    dataset = load_dataset(root)   # not opened at load time
    assert "train" in dataset.deferred
    options = PipelineOptions(height=16, width=16, batch_size=2, n_classes=3)
    samples = dataset.split("train")
    PIPELINE_FAILURES.clear()
    with pytest.raises(PIPELINE_ERRORS):
        for _ in DataGenerator(samples, options, training=False, check_files=True).dataset():
            pass
    assert len(PIPELINE_FAILURES) == 1
    assert PIPELINE_FAILURES[0].startswith(f"{root / folder / stem}.png: ")
    assert fragment in PIPELINE_FAILURES[0]
    # the good files pass the same checks unchanged
    good = [s for s in samples if s.stem != stem]
    batches = list(DataGenerator(good, options, training=False, check_files=True).dataset())
    plain = list(DataGenerator(good, options, training=False).dataset())
    for (image, mask), (image0, mask0) in zip(batches, plain, strict=True):
        assert tf.reduce_all(image == image0) and tf.reduce_all(mask == mask0)


def test_the_pipeline_checks_each_pair_once(root, monkeypatch):
    from fcn_keras import pipeline
    pipeline._CHECKED_PAIRS.clear()
    opened = []

    def counting(path, pipeline=True):
        opened.append(path)
        return real(path, pipeline)
    real = pipeline.check_image
    monkeypatch.setattr(pipeline, "check_image", counting)
    samples = load_dataset(root).split("train")
    options = pipeline.PipelineOptions(height=16, width=16, batch_size=3, n_classes=3)
    generator = pipeline.DataGenerator(samples, options, training=False, check_files=True)
    for _ in range(2):   # two epochs
        assert len(list(generator.dataset())) == 3
    assert sorted(opened) == sorted(str(s.image) for s in samples)


def test_training_on_a_long_split_names_the_bad_file(root, tmp_path):
    from fcn_keras import pipeline
    from fcn_keras.app import FCN
    from fcn_keras.config import parse_args
    pipeline._CHECKED_PAIRS.clear()
    stem = unchecked(root)[0]
    _text(root / "images" / f"{stem}.png")
    app = FCN(parse_args(["--data-path", str(root), "--save-dir", str(tmp_path / "w"),
                          "--train", "--epochs", "1", "--n", "1", "--layers", "1",
                          "--head-filters", "8", "--height", "16", "--width", "16",
                          "--batch-size", "9", "--verbose", "0", "--seed", "1"]))
    with pytest.raises(DataError) as info:
        app.train()
    assert_names(info, "the input pipeline stopped", "1 unreadable file(s)",
                 f"images/{stem}.png: not a readable image")


# ---------------------------------------------------------------------------------------------
# The converter


def _via_folder(folder, n):
    folder.mkdir()
    pixels = np.random.default_rng(0).integers(0, 255, (H, W, 3), dtype=np.uint8)
    entries = {}
    for i in range(n):
        name = f"i{i:03d}.jpg"
        Image.fromarray(pixels).save(folder / name)
        entries[f"{name}1"] = {"filename": name, "size": 1, "file_attributes": {},
                               "regions": [{"shape_attributes": {
                                   "name": "polygon", "all_points_x": [2, 20, 10],
                                   "all_points_y": [2, 4, 20]},
                                   "region_attributes": {"name": "cat"}}]}
    (folder / "v.json").write_text(json.dumps(entries))
    return folder


def test_a_long_via_file_needs_only_the_headers(tmp_path, monkeypatch):
    import fcn_keras.annotations.convert as convert
    monkeypatch.setattr(convert, "FULL_CHECK_LIMIT", 2)
    folder = _via_folder(tmp_path / "via", 6)
    (folder / "i005.jpg").unlink()
    (folder / "i004.jpg").write_text("not an image")
    sample = convert.EvenSample(2)   # of the 4 images whose header was read quickly:
    for i in range(4):
        sample.offer(i)
    assert sample.chosen() == [0, 2]   # fully checked after the pass
    _truncated(folder / "i003.jpg")   # only the header is needed: this converts
    with pytest.raises(DataError) as info:
        convert_via("v.json", folder)
    assert_names(info, "2 problem(s)", "i005.jpg: image file not found",
                 "i004.jpg: not a readable image")
    assert not (folder / "masks").exists()
    (folder / "i004.jpg").unlink()
    result = convert_via("v.json", folder, skip_missing=True)
    assert sorted(result.mask_paths) == ["i000", "i001", "i002", "i003"]
    mask = np.asarray(Image.open(result.mask_paths["i002"]))
    assert mask.shape == (H, W) and mask.max() == 1
    assert mask.shape == np.asarray(Image.open(result.mask_paths["i003"])).shape


def _exif(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


@pytest.mark.parametrize("fmt, options", [
    pytest.param("PNG", {}, id="png"),
    pytest.param("JPEG", {}, id="jpeg"),
    pytest.param("JPEG", {"progressive": True}, id="jpeg-progressive"),
    pytest.param("JPEG", {"exif": _exif(6)}, id="jpeg-exif-rotated"),
    pytest.param("JPEG", {"exif": _exif(1)}, id="jpeg-exif-upright"),
    pytest.param("PNG", {"exif": _exif(8)}, id="png-exif-rotated"),
])
def test_quick_header_agrees_with_pil(tmp_path, fmt, options):
    from fcn_keras.annotations.convert import exif_rotated
    from fcn_keras.io_utils import quick_header
    path = tmp_path / f"a.{fmt.lower()}"
    Image.new("RGB", (W + 7, H)).save(path, format=fmt, **options)
    found, size, orientation = quick_header(path)
    assert (found, size) == (fmt, (W + 7, H))
    assert (orientation not in (0, 1)) == exif_rotated(path)
    assert orientation == options.get("exif", {}).get(0x0112, 1)


def test_quick_header_leaves_anything_unusual_to_pil(tmp_path):
    from fcn_keras.io_utils import quick_header
    Image.new("RGB", (W, H)).save(tmp_path / "a.bmp")
    Image.new("RGB", (W, H)).save(tmp_path / "a.jpg")
    data = (tmp_path / "a.jpg").read_bytes()
    (tmp_path / "short.jpg").write_bytes(data[:data.index(b"\xff\xc0")])   # no frame header
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    for name in ("a.bmp", "short.jpg", "empty.png", "text.png", "missing.png"):
        assert quick_header(tmp_path / name) is None, name


@pytest.mark.slow
def test_the_benchmark_runs(tmp_path):
    """benchmarks/long_lists.py on 40 entries (its import of the converter once went stale)."""
    import subprocess
    import sys

    from helpers import ROOT
    out = tmp_path / "long_lists.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "long_lists.py"), "--entries",
                    "40", "--folder", str(tmp_path / "data"), "--json", str(out)],
                   check=True, capture_output=True, timeout=300)
    results = json.loads(out.read_text())["results"]
    assert results["folder"]["outcome"] == results["folder-list"]["outcome"] == "40 samples"
    assert "i000039.jpg" in results["via"]["outcome"]
    assert "image file not found" in results["via"]["outcome"]
    assert results["via-json"]["outcome"] == "40 entries"
    assert all(r["seconds"] >= 0 and r["rss_growth_mb"] >= 0 for r in results.values())


def test_a_sample_holds_its_paths_as_text_and_hands_out_paths():
    """A sample keeps two strings, not two `Path`s (which also hold their parts): 10,000
    samples take under half the memory of their two `Path`s alone (which also cache their
    text once it is asked for, as the checks do)."""
    import tracemalloc
    from pathlib import Path

    from fcn_keras.datasets.base import Sample
    folder = Path("/data/a-dataset-folder")

    def bytes_per_entry(make):
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            kept = [make(i) for i in range(10_000)]
            return (tracemalloc.get_traced_memory()[0] - before) / len(kept), kept
        finally:
            tracemalloc.stop()

    def paths(i):   # as a loaded list held them: their text computed by the checks
        pair = folder / "images" / f"i{i:06d}.png", folder / "masks" / f"i{i:06d}.png"
        return pair, [str(p) for p in pair]

    as_paths, _ = bytes_per_entry(lambda i: paths(i)[0])
    as_samples, samples = bytes_per_entry(lambda i: Sample(
        folder / "images" / f"i{i:06d}.png", folder / "masks" / f"i{i:06d}.png", f"i{i:06d}"))
    assert as_samples < 0.5 * as_paths, (as_samples, as_paths)
    sample = samples[7]
    assert sample.image == folder / "images" / "i000007.png" and isinstance(sample.image, Path)
    assert sample.mask.name == "i000007.png" and sample.stem == "i000007"
    sample.mask = None
    assert sample.mask is None and sample != samples[8]
    assert Sample(sample.image, None, "i000007") == sample
    assert "i000007.png" in repr(sample)
