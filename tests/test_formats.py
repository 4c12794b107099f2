"""Dataset readers on tiny datasets built in tmp_path: splits, classes, caches and clear errors."""

import json
import os
import sys
import types

import numpy as np
import pytest
from PIL import Image

from fcn_keras.classes import ClassInfo, voc_colormap
from fcn_keras.datasets import check_mask_values, detect_format, load_dataset, npy, voc
from fcn_keras.errors import DataError

H, W = 6, 8


def write_image(path, size=(W, H), fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (10, 20, 30)).save(path, format=fmt)


def write_mask(path, values, mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(np.asarray(values, dtype=np.uint8), mode="L")
    if mode == "P":
        image = image.convert("P")
        image.putpalette([v for c in voc_colormap(256) for v in c])
    image.save(path)


def label_map(value=1, ignore=None):
    mask = np.zeros((H, W), np.uint8)
    mask[2:4, 2:6] = value
    if ignore is not None:
        mask[0, :] = ignore
    return mask


def make_folder(root, stems=("a", "b", "c", "d"), lists=None, n_classes=3):
    for i, stem in enumerate(stems):
        write_image(root / "images" / f"{stem}{'.jpg' if i % 2 else '.png'}")
        write_mask(root / "masks" / f"{stem}.png", label_map(1 + i % (n_classes - 1), 255),
                   mode="P" if i % 2 else "L")
    ClassInfo([f"c{i}" for i in range(n_classes)]).save(root / "classes.json")
    lists = {"train": stems[:2], "val": stems[2:3], "test": stems[3:]} if lists is None else lists
    for split, split_stems in lists.items():
        (root / f"{split}.txt").write_text("".join(f"{s}\n" for s in split_stems))
    return root


# ---------------------------------------------------------------------------------------------
# folder


def test_folder_splits_classes_and_detection(tmp_path):
    make_folder(tmp_path)
    assert detect_format(tmp_path) == "folder"
    dataset = load_dataset(tmp_path)
    assert dataset.format == "folder"
    assert {k: [s.stem for s in v] for k, v in dataset.splits.items()} == \
        {"train": ["a", "b"], "val": ["c"], "test": ["d"]}
    assert dataset.classes.names == ["c0", "c1", "c2"]
    assert dataset.ignore_index == 255
    a, b = dataset.split("train")
    assert a.image == tmp_path / "images" / "a.png" and b.image == tmp_path / "images" / "b.jpg"
    assert a.mask == tmp_path / "masks" / "a.png"
    assert list(check_mask_values(dataset, "train")) == [2 * (H * W - W - 8), 8, 8]
    assert "train 2, val 1, test 1" in dataset.summary()


def test_folder_without_val_list_holds_out_a_stable_subset(tmp_path):
    stems = [f"img{i:02d}" for i in range(30)]
    make_folder(tmp_path, stems, lists={"train": stems})
    first = load_dataset(tmp_path, val_fraction=0.2)
    second = load_dataset(tmp_path, val_fraction=0.2)
    val = [s.stem for s in first.split("val")]
    train = [s.stem for s in first.split("train")]
    assert val == [s.stem for s in second.split("val")]
    assert 1 <= len(val) < 30 and not set(val) & set(train)
    assert sorted(val + train) == stems
    tiny = load_dataset(tmp_path, val_fraction=0.001)
    assert len(tiny.split("val")) == 1
    assert "val" not in load_dataset(tmp_path, val_fraction=0).splits


def test_folder_without_lists_uses_every_masked_image(tmp_path):
    make_folder(tmp_path, lists={})
    write_image(tmp_path / "images" / "unlabelled.png")
    dataset = load_dataset(tmp_path, val_fraction=0.25)
    stems = sorted(s.stem for split in dataset.splits.values() for s in split)
    assert stems == ["a", "b", "c", "d"]


def test_folder_needs_classes(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "classes.json").unlink()
    with pytest.raises(DataError, match="classes.json"):
        load_dataset(tmp_path)
    assert load_dataset(tmp_path, classes="bg,x,y").classes.names == ["bg", "x", "y"]
    ClassInfo(["c0", "c1", "c2"]).save(tmp_path / "classes.json")
    with pytest.raises(DataError, match="2 class names given"):
        load_dataset(tmp_path, classes=["bg", "x"])


def test_missing_files_and_size_mismatch_are_all_reported(tmp_path):
    make_folder(tmp_path)
    (tmp_path / "masks" / "a.png").unlink()
    (tmp_path / "images" / "c.png").unlink()
    write_image(tmp_path / "images" / "b.jpg", size=(W + 1, H))
    with pytest.raises(DataError) as error:
        load_dataset(tmp_path)
    message = str(error.value)
    assert "3 problem(s)" in message
    assert "masks/a.png: mask file not found" in message
    assert "images/c.*: image not found" in message
    assert "masks/b.png: mask is 8x6 but image images/b.jpg is 9x6" in message


def test_long_problem_lists_are_cut(tmp_path):
    stems = [f"s{i}" for i in range(25)]
    make_folder(tmp_path, stems, lists={"train": stems, "val": stems[:1]})
    for stem in stems:
        (tmp_path / "masks" / f"{stem}.png").unlink()
    with pytest.raises(DataError, match="and 6 more"):
        load_dataset(tmp_path)


def test_out_of_range_mask_value_names_file_and_value(tmp_path):
    make_folder(tmp_path)
    write_mask(tmp_path / "masks" / "b.png", label_map(7, 255))
    with pytest.raises(DataError, match=r"masks/b.png: values \[7\] \(classes are 0..2"):
        load_dataset(tmp_path)
    dataset = load_dataset(tmp_path, validate=False)
    with pytest.raises(DataError, match="b.png"):
        check_mask_values(dataset, "train")


def test_rgb_mask_is_refused_in_folder_layout(tmp_path):
    make_folder(tmp_path)
    write_image(tmp_path / "masks" / "a.png")
    with pytest.raises(DataError, match="masks/a.png: mask has mode RGB"):
        load_dataset(tmp_path)


def test_empty_and_missing_splits(tmp_path, capsys):
    make_folder(tmp_path)
    (tmp_path / "test.txt").write_text("\n# nothing here\n")
    dataset = load_dataset(tmp_path)     # an unused empty split is a note, not an error
    assert capsys.readouterr().err.count("note: split 'test' is empty") == 1
    with pytest.raises(DataError, match="split 'test' is empty"):
        dataset.split("test")
    (tmp_path / "test.txt").unlink()
    dataset = load_dataset(tmp_path)
    with pytest.raises(DataError, match=r"split 'test' does not exist; available splits: "
                                        r"train \(2\), val \(1\)"):
        dataset.split("test")


@pytest.mark.parametrize("entry", ["../outside", "/etc/passwd", "sub/../../x", "C:/x"])
def test_list_entries_cannot_escape_the_root(tmp_path, entry):
    make_folder(tmp_path)
    (tmp_path / "train.txt").write_text(f"a\n{entry}\n")
    with pytest.raises(DataError, match="outside the data folder"):
        load_dataset(tmp_path)


def test_unlabelled_test_list_gives_samples_without_masks(tmp_path):
    make_folder(tmp_path)
    write_image(tmp_path / "images" / "new.png")
    (tmp_path / "test.txt").write_text("new\n")
    dataset = load_dataset(tmp_path)
    assert dataset.split("test")[0].mask is None


def test_unrecognised_folder_lists_what_each_format_expects(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DataError) as error:
        load_dataset(tmp_path)
    message = str(error.value)
    for name in ("via:", "npy:", "folder:", "voc:", "camvid:", "notes.txt"):
        assert name in message
    with pytest.raises(DataError, match="not a folder"):
        load_dataset(tmp_path / "missing")
    with pytest.raises(DataError, match="unknown data format"):
        load_dataset(tmp_path, data_format="yolo")


# ---------------------------------------------------------------------------------------------
# voc


def make_voc(base, rgb=False):
    root = base / "VOCdevkit" / "VOC2012"
    colors = voc_colormap(256)
    for i, stem in enumerate(["2007_000001", "2007_000002", "2007_000003"]):
        write_image(root / "JPEGImages" / f"{stem}.jpg", fmt="JPEG")
        mask = label_map(i + 1, 255)
        mask[5, 0] = 15  # person
        if rgb:
            pixels = np.array(colors, np.uint8)[mask]
            pixels[5, 1] = (1, 2, 3)  # a colour that is no class
            (root / "SegmentationClass").mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels, "RGB").save(root / "SegmentationClass" / f"{stem}.png")
        else:
            write_mask(root / "SegmentationClass" / f"{stem}.png", mask, mode="P")
    lists = root / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text("2007_000001\n2007_000002\n")
    (lists / "val.txt").write_text("2007_000003\n")
    return root


def test_voc_palette_masks_are_read_in_place(tmp_path):
    root = make_voc(tmp_path)
    for path in (tmp_path, tmp_path / "VOCdevkit", root):
        assert detect_format(path) == "voc"
    dataset = load_dataset(tmp_path)
    assert dataset.root == root
    assert dataset.n_classes == 21 and dataset.ignore_index == 255
    assert dataset.classes.names[15] == "person"
    sample = dataset.split("val")[0]
    assert sample.mask == root / "SegmentationClass" / "2007_000003.png"
    mask = np.asarray(Image.open(sample.mask))
    assert mask[3, 3] == 3 and mask[0, 0] == 255 and mask[5, 0] == 15
    assert not (root / ".fcn_cache").exists()


def test_voc_rgb_masks_are_converted_once_into_the_cache(tmp_path):
    root = make_voc(tmp_path, rgb=True)
    dataset = load_dataset(root)
    sample = dataset.split("train")[1]
    assert sample.mask == root / ".fcn_cache" / "SegmentationClassIndex" / "2007_000002.png"
    with Image.open(sample.mask) as image:
        assert image.mode == "P"
        mask = np.asarray(image)
    assert mask[3, 3] == 2 and mask[5, 0] == 15
    assert mask[0, 0] == 255  # VOC boundary colour 224,224,192
    assert mask[5, 1] == 255  # unknown colour
    assert mask[1, 1] == 0
    stamp = sample.mask.stat().st_mtime_ns
    again = load_dataset(root)
    assert again.split("train")[1].mask == sample.mask
    assert sample.mask.stat().st_mtime_ns == stamp


def test_rgb_to_index_maps_known_colours_only():
    colors = voc_colormap(21)
    rgb = np.array([[colors[0], colors[20], (224, 224, 192), (9, 9, 9)]], np.uint8)
    np.testing.assert_array_equal(voc.rgb_to_index(rgb, colors), [[0, 20, 255, 255]])


# ---------------------------------------------------------------------------------------------
# camvid (SegNet)


def make_camvid(root, absolute=False):
    lines = {}
    for split, stems in {"train": ["0001TP_006690", "0001TP_006720"],
                         "val": ["0016E5_07959"]}.items():
        lines[split] = []
        for stem in stems:
            write_image(root / split / f"{stem}.png")
            write_mask(root / f"{split}annot" / f"{stem}.png", label_map(3, ignore=11))
            prefix = "/SegNet/CamVid/" if absolute else ""
            lines[split].append(f"{prefix}{split}/{stem}.png {prefix}{split}annot/{stem}.png")
        (root / f"{split}.txt").write_text("\n".join(lines[split]) + "\n")
    return root


@pytest.mark.parametrize("absolute", [False, True])
def test_camvid_segnet_lists(tmp_path, absolute):
    make_camvid(tmp_path, absolute)
    assert detect_format(tmp_path) == "camvid"
    dataset = load_dataset(tmp_path)
    assert dataset.n_classes == 11 and dataset.ignore_index == 11
    assert dataset.classes.names[0] == "Sky"
    assert [s.stem for s in dataset.split("train")] == ["0001TP_006690", "0001TP_006720"]
    sample = dataset.split("val")[0]
    assert sample.image == tmp_path / "val" / "0016E5_07959.png"
    assert sample.mask == tmp_path / "valannot" / "0016E5_07959.png"
    assert "test" not in dataset.splits


def test_camvid_absolute_path_inside_root_is_kept(tmp_path):
    make_camvid(tmp_path)
    root = tmp_path.resolve()
    (tmp_path / "val.txt").write_text(
        f"{root}/val/0016E5_07959.png {root}/valannot/0016E5_07959.png\n")
    assert load_dataset(tmp_path).split("val")[0].mask.resolve() == \
        root / "valannot" / "0016E5_07959.png"


def test_camvid_errors(tmp_path):
    make_camvid(tmp_path)
    write_mask(tmp_path / "trainannot" / "0001TP_006720.png", label_map(12))
    with pytest.raises(DataError, match=r"0001TP_006720.png: values \[12\].*ignore index 11"):
        load_dataset(tmp_path)
    (tmp_path / "val.txt").write_text("val/0016E5_07959.png ../valannot/0016E5_07959.png\n")
    with pytest.raises(DataError, match="val.txt:1.*outside the data folder"):
        load_dataset(tmp_path, data_format="camvid")
    (tmp_path / "val.txt").write_text("val/0016E5_07959.png\n")
    with pytest.raises(DataError, match="val.txt:1: expected 'image_path mask_path'"):
        load_dataset(tmp_path, data_format="camvid")


# ---------------------------------------------------------------------------------------------
# npy (the book's pickled labels)


def one_hot(index, n_classes=4):
    labels = np.eye(n_classes, dtype=np.uint8)[index]
    labels[0, 0] = 0  # a pixel with no class
    return labels


def make_npy(root, n_train=12):
    train = {}
    for i in range(n_train):
        write_image(root / f"{i:07d}.jpg", fmt="JPEG")
        train[f"{i:07d}.jpg"] = one_hot(label_map(1 + i % 3))
    write_image(root / "9000000.jpg", fmt="JPEG")
    np.save(root / "segmentation_train.npy", train, allow_pickle=True)
    np.save(root / "segmentation_test.npy", {"9000000.jpg": one_hot(label_map(2))},
            allow_pickle=True)
    return root


def test_npy_needs_allow_pickle(tmp_path):
    make_npy(tmp_path)
    assert detect_format(tmp_path) == "npy"
    with pytest.raises(DataError, match="pickle.*--allow-pickle"):
        load_dataset(tmp_path)
    assert not (tmp_path / ".fcn_cache").exists()


def test_npy_is_converted_to_index_masks_once(tmp_path, monkeypatch):
    make_npy(tmp_path)
    dataset = load_dataset(tmp_path, allow_pickle=True, val_fraction=0.25)
    assert dataset.format == "npy" and dataset.n_classes == 4
    assert dataset.classes.names[0] == "background"
    assert len(dataset.split("train")) + len(dataset.split("val")) == 12
    sample = dataset.split("test")[0]
    assert sample.image == tmp_path / "9000000.jpg" and sample.stem == "9000000"
    assert sample.mask.parent == tmp_path / ".fcn_cache" / "npy_masks" / "segmentation_test"
    mask = np.asarray(Image.open(sample.mask))
    np.testing.assert_array_equal(mask[1:], label_map(2)[1:])
    assert mask[0, 0] == 255 and mask[0, 1] == 0
    monkeypatch.setattr(npy, "_load_label_dict", lambda path: pytest.fail("re-read pickle"))
    again = load_dataset(tmp_path, allow_pickle=True, val_fraction=0.25, classes="bg,a,b,c")
    assert again.split("test")[0].mask == sample.mask
    assert again.classes.names == ["bg", "a", "b", "c"]


def test_npy_plain_array_is_not_a_label_dictionary(tmp_path):
    np.save(tmp_path / "segmentation_train.npy", np.zeros((2, 2)))
    with pytest.raises(DataError, match="plain float64 array"):
        load_dataset(tmp_path, allow_pickle=True)


def test_npy_labels_name_accepts_either_suffix(tmp_path):
    make_npy(tmp_path)
    dataset = load_dataset(tmp_path, data_format="npy", allow_pickle=True,
                           train_labels="segmentation_train.npy")
    assert len(dataset.split("test")) == 1


# ---------------------------------------------------------------------------------------------
# via (through the converter, once it exists)


def via_entry(filename, polygons):
    regions = [{"shape_attributes": {"name": "polygon", "all_points_x": xs, "all_points_y": ys},
                "region_attributes": {"Name": name}} for name, xs, ys in polygons]
    size = os.path.getsize(filename)
    return f"{filename.name}{size}", {"filename": filename.name, "size": size,
                                       "regions": regions, "file_attributes": {}}


def write_via(path, entries):
    path.write_text(json.dumps({"_via_img_metadata": dict(entries)}))


def test_via_layout_is_converted_and_reused(tmp_path):
    pytest.importorskip("fcn_keras.annotations.convert")
    for stem in ("0010001", "0010002", "0010003", "0010004"):
        write_image(tmp_path / f"{stem}.jpg", size=(16, 12), fmt="JPEG")
    box = ([2, 10, 10, 2], [2, 2, 8, 8])
    write_via(tmp_path / "segmentation_train.json",
              [via_entry(tmp_path / f"{s}.jpg", [(str(1 + i % 2), *box)])
               for i, s in enumerate(("0010001", "0010002", "0010003"))])
    write_via(tmp_path / "segmentation_test.json",
              [via_entry(tmp_path / "0010004.jpg", [("1", *box)])])
    assert detect_format(tmp_path) == "via"
    dataset = load_dataset(tmp_path, classes="background,water,soda")
    assert dataset.format == "via"
    assert dataset.classes.names == ["background", "water", "soda"]
    assert len(dataset.split("train")) == 2 and len(dataset.split("val")) == 1
    sample = dataset.split("test")[0]
    assert sample.stem == "0010004" and sample.image == tmp_path / "0010004.jpg"
    mask = np.asarray(Image.open(sample.mask))
    assert mask.shape == (12, 16) and mask[5, 5] == 1 and mask[0, 0] == 0
    stamp = sample.mask.stat().st_mtime_ns
    again = load_dataset(tmp_path, classes="background,water,soda")
    assert again.split("test")[0].mask == sample.mask
    assert sample.mask.stat().st_mtime_ns == stamp
    # a damaged cache manifest (cut short, not an object, a part missing) counts as none
    from fcn_keras.datasets import CACHE_DIR
    manifest = tmp_path / CACHE_DIR / "via_manifest.json"
    text = manifest.read_text()
    record = json.loads(text)
    for damaged in (text[:len(text) // 2], "[]", json.dumps({**record, "splits": None}),
                    json.dumps({k: v for k, v in record.items() if k != "class_info"})):
        manifest.write_text(damaged)
        again = load_dataset(tmp_path, classes="background,water,soda")
        assert len(again.split("train")) == 2 and again.split("test")[0].mask == sample.mask
        assert json.loads(manifest.read_text()) == record   # rewritten whole


def test_via_classes_json_names_the_books_integer_classes(tmp_path):
    pytest.importorskip("fcn_keras.annotations.convert")
    write_image(tmp_path / "0010001.jpg", size=(16, 12), fmt="JPEG")
    write_via(tmp_path / "segmentation_train.json",
              [via_entry(tmp_path / "0010001.jpg", [("2", [2, 10, 10, 2], [2, 2, 8, 8])])])
    colors = [(0, 0, 0), (0, 114, 189), (217, 83, 25), (237, 177, 32)]
    ClassInfo(["background", "water", "soda", "juice"], colors).save(tmp_path / "classes.json")
    dataset = load_dataset(tmp_path)
    assert dataset.classes.names == ["background", "water", "soda", "juice"]
    assert dataset.classes.colors[2] == (217, 83, 25)
    mask = np.asarray(Image.open(dataset.split("train")[0].mask))
    assert mask[5, 5] == 2


def test_via_split_bookkeeping_with_a_stand_in_converter(tmp_path, monkeypatch):
    """Pins down how load_dataset calls the converter and re-uses its output (no converter
    needed): all JSON files in one call, masks under <root>/masks, a second load converts
    nothing, a touched JSON converts again."""
    calls = []

    def convert_via(json_paths, data_path, output_dir=None, classes=None, attribute=None,
                    skip_missing=False, draw_order="area", progress=False):
        calls.append({"jsons": [p.name for p in json_paths],
                      "classes": getattr(classes, "names", classes),
                      "attribute": attribute, "output_dir": output_dir})
        info = classes if isinstance(classes, ClassInfo) else ClassInfo(classes or ["bg", "x"])
        info.save(output_dir / "classes.json")
        stems, images, masks = {}, {}, {}
        for path in json_paths:
            entries = json.loads(path.read_text())["_via_img_metadata"].values()
            stems[path.stem] = []
            for entry in entries:
                stem = entry["filename"].rsplit(".", 1)[0]
                stems[path.stem].append(stem)
                images[stem] = data_path / entry["filename"]
                masks[stem] = output_dir / f"{stem}.png"
                write_mask(masks[stem], label_map(1))
        return types.SimpleNamespace(output_dir=output_dir, class_info=info, stems=stems,
                                     image_paths=images, mask_paths=masks)

    monkeypatch.setitem(sys.modules, "fcn_keras.annotations.convert",
                        types.SimpleNamespace(convert_via=convert_via))
    stems = [f"{i:07d}" for i in range(6)]
    for stem in stems:
        write_image(tmp_path / f"{stem}.jpg", fmt="JPEG")
    write_via(tmp_path / "segmentation_train.json",
              [via_entry(tmp_path / f"{s}.jpg", []) for s in stems[:3]])
    write_via(tmp_path / "segmentation_val.json", [via_entry(tmp_path / "0000003.jpg", [])])
    write_via(tmp_path / "segmentation_test.json",
              [via_entry(tmp_path / f"{s}.jpg", []) for s in stems[4:]])
    ClassInfo(["bg", "cup"]).save(tmp_path / "classes.json")
    dataset = load_dataset(tmp_path, attribute="Name")
    assert calls == [{"jsons": ["segmentation_train.json", "segmentation_val.json",
                                "segmentation_test.json"], "classes": ["bg", "cup"],
                      "attribute": "Name", "output_dir": tmp_path / "masks"}]
    assert {k: [s.stem for s in v] for k, v in dataset.splits.items()} == \
        {"train": stems[:3], "val": ["0000003"], "test": stems[4:]}
    assert dataset.split("test")[1].mask == tmp_path / "masks" / "0000005.png"
    again = load_dataset(tmp_path, attribute="Name")
    assert len(calls) == 1 and again.splits == dataset.splits
    assert again.classes.names == ["bg", "cup"]
    load_dataset(tmp_path, attribute="Class")
    assert len(calls) == 2
    stamp = (tmp_path / "segmentation_test.json").stat().st_mtime_ns + 10 ** 9
    os.utime(tmp_path / "segmentation_test.json", ns=(stamp, stamp))
    load_dataset(tmp_path, attribute="Class")
    assert len(calls) == 3
