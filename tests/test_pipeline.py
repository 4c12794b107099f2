"""The tf.data pipeline: dtypes, shapes, paired augmentation alignment, padding, evaluation."""

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

from fcn_keras.datasets import Sample  # noqa: E402
from fcn_keras.io_utils import write_index_png  # noqa: E402
from fcn_keras.pipeline import DataGenerator, PipelineOptions  # noqa: E402


def coordinate_sample(tmp_path, height=60, width=90):
    """An image whose pixels encode their own (row, col), and a mask that is a function of it."""
    rows, cols = np.mgrid[:height, :width]
    image = np.stack([rows, cols, np.zeros_like(rows)], -1).astype(np.uint8)
    mask = ((rows // 5 + cols // 7) % 3).astype(np.uint8)
    Image.fromarray(image).save(tmp_path / "coords.png")
    write_index_png(tmp_path / "coords_mask.png", mask)
    return Sample(image=tmp_path / "coords.png", mask=tmp_path / "coords_mask.png", stem="coords")


def expected_mask(image_uint8):
    rows = image_uint8[..., 0].astype(int)
    cols = image_uint8[..., 1].astype(int)
    return (rows // 5 + cols // 7) % 3


def test_training_batches_types_and_shapes(tmp_path):
    sample = coordinate_sample(tmp_path)
    options = PipelineOptions(height=32, width=48, batch_size=2, n_classes=3, seed=1)
    images, masks = next(iter(DataGenerator([sample] * 4, options, training=True).dataset()))
    assert images.dtype == tf.float32 and masks.dtype == tf.uint8
    assert tuple(images.shape) == (2, 32, 48, 3) and tuple(masks.shape) == (2, 32, 48, 1)
    assert 0.0 <= float(tf.reduce_min(images)) and float(tf.reduce_max(images)) <= 1.0


def test_crop_and_flip_keep_image_and_mask_aligned(tmp_path):
    sample = coordinate_sample(tmp_path)
    options = PipelineOptions(height=32, width=48, batch_size=4, n_classes=3,
                              scale_range=(1.0, 1.0))
    flipped = 0
    for images, masks in DataGenerator([sample] * 16, options, training=True).dataset():
        pixels = np.round(images.numpy() * 255).astype(np.uint8)
        for image, mask in zip(pixels, masks.numpy()[..., 0]):
            np.testing.assert_array_equal(mask, expected_mask(image))
            flipped += int(image[0, 0, 1] > image[0, -1, 1])
    assert 0 < flipped < 16  # both flipped and unflipped crops occurred


def test_scaled_crops_stay_aligned(tmp_path):
    """Exact alignment after a random rescale. The image is linear in (row, col), and bilinear
    interpolation keeps it so: each pixel holds the fractional source position it came from.
    The mask's nearest neighbour takes the source pixel whose centre is closest, i.e. that
    position rounded; so every mask pixel must be the class of its image pixel's rounded
    position. Only near-ties (position within 0.01 of a half-pixel) are left out."""
    sample = coordinate_sample(tmp_path)
    options = PipelineOptions(height=32, width=48, batch_size=4, n_classes=3,
                              scale_range=(0.6, 1.8), seed=3)
    checked = 0
    for images, masks in DataGenerator([sample] * 8, options, training=True).dataset():
        masks = masks.numpy()[..., 0]
        position = images.numpy()[..., :2].astype(np.float64) * 255   # (row, col), fractional
        nearest = np.floor(position + 0.5)
        tie = (np.abs(position + 0.5 - np.round(position + 0.5)) < 0.01).any(-1)
        expected = (nearest[..., 0] // 5 + nearest[..., 1] // 7) % 3
        keep = (masks != 255) & ~tie
        np.testing.assert_array_equal(masks[keep], expected[keep])
        checked += keep.sum()
        assert keep.sum() > 0.9 * (masks != 255).sum()
    assert checked > 0


def test_small_images_are_padded_with_ignore(tmp_path):
    sample = coordinate_sample(tmp_path, height=20, width=30)
    options = PipelineOptions(height=32, width=48, batch_size=1, n_classes=3,
                              scale_range=(1.0, 1.0), flip=False)
    images, masks = next(iter(DataGenerator([sample], options, training=True).dataset()))
    masks = masks.numpy()[0, ..., 0]
    assert (masks == 255).sum() == 32 * 48 - 20 * 30
    assert float(images.numpy()[0, 25:, 35:].max()) == 0.0


def test_evaluation_batches_are_full_images_padded_with_ignore(tmp_path):
    big = coordinate_sample(tmp_path, 60, 90)
    small_dir = tmp_path / "small"
    small_dir.mkdir()
    small = coordinate_sample(small_dir, 40, 50)
    options = PipelineOptions(height=32, width=48, batch_size=2, n_classes=3)
    generator = DataGenerator([big, small], options, training=False)
    assert len(generator) == 1
    images, masks = next(iter(generator.dataset()))
    assert tuple(images.shape) == (2, 60, 90, 3)
    assert (masks.numpy()[1, 40:, :, 0] == 255).all()
    np.testing.assert_array_equal(masks.numpy()[0, ..., 0],
                                  expected_mask(np.round(images.numpy()[0] * 255)))


# --- the random decisions: independent streams, repeatable under a seed ---------------------

def draws(n, options, shape=(100, 100)):
    """The decisions for samples 0..n-1 of a run with base seed 7, as numpy arrays."""
    from fcn_keras.pipeline import draw_augmentation
    out = {}
    for i in range(n):
        draw = draw_augmentation(tf.constant([7, i], tf.int64), tf.constant(shape), options)
        for key, value in draw.items():
            out.setdefault(key, []).append(value.numpy())
    return {key: np.array(value) for key, value in out.items()}


def test_augmentation_decisions_are_independent():
    options = PipelineOptions(height=40, width=40, batch_size=1, n_classes=3,
                              scale_range=(0.5, 1.5), color_jitter=0.3)
    d = draws(400, options)
    small = d["scale"] < 1.0
    # flip must not follow the scale (it did: one op seed for every draw)
    assert 0.3 < d["flip"][small].mean() < 0.7 and 0.3 < d["flip"][~small].mean() < 0.7
    assert (d["top"] == d["left"]).mean() < 0.1   # a square image: top == left every time before
    # the offsets' ranges grow with the scale: compare where in its range each offset fell
    room = np.maximum(d["size"], 40) - 40 + 1
    d["top"], d["left"] = (d["top"] + 0.5) / room[:, 0], (d["left"] + 0.5) / room[:, 1]
    names = ("scale", "top", "left", "flip", "brightness", "contrast", "saturation")
    matrix = np.corrcoef(np.stack([d[name].astype(float) for name in names]))
    off_diagonal = np.abs(matrix[~np.eye(len(names), dtype=bool)])
    assert off_diagonal.max() < 0.2, dict(zip(names, matrix.round(2).tolist()))
    for name, (low, high) in {"scale": (0.5, 1.5), "brightness": (0.7, 1.3)}.items():
        assert low <= d[name].min() and d[name].max() <= high
        assert d[name].max() - d[name].min() > 0.8 * (high - low)   # the whole range is used


def test_no_jitter_and_no_flip_draw_identity():
    options = PipelineOptions(height=40, width=40, batch_size=1, n_classes=3,
                              scale_range=(1.0, 1.0), flip=False)
    d = draws(20, options, shape=(60, 50))
    assert not d["flip"].any() and (d["scale"] == 1.0).all()
    assert (d["brightness"] == 1.0).all() and (d["saturation"] == 1.0).all()
    assert d["top"].max() <= 20 and d["left"].max() <= 10 and len(set(d["top"])) > 5


def batches(sample, seed, color_jitter=0.0, count=3):
    options = PipelineOptions(height=32, width=48, batch_size=4, n_classes=3, seed=seed,
                              scale_range=(0.7, 1.4), color_jitter=color_jitter)
    dataset = DataGenerator([sample] * 8, options, training=True).dataset(repeat=True)
    return [(i.numpy(), m.numpy()) for i, m in dataset.take(count)]


def test_a_seeded_run_repeats_exactly_and_another_seed_differs(tmp_path):
    sample = coordinate_sample(tmp_path)
    first, again, other = (batches(sample, s, 0.2) for s in (5, 5, 6))
    for (i1, m1), (i2, m2) in zip(first, again):
        np.testing.assert_array_equal(i1, i2)
        np.testing.assert_array_equal(m1, m2)
    assert any(not np.array_equal(i1, i2) for (i1, _), (i2, _) in zip(first, other))


def test_each_epoch_draws_new_augmentations(tmp_path):
    sample = coordinate_sample(tmp_path)
    (epoch1, _), (epoch2, _) = batches(sample, 3, count=4)[::2]   # 8 samples: 2 batches/epoch
    assert not np.array_equal(epoch1, epoch2)


def test_every_iterator_of_a_seeded_dataset_starts_with_the_same_batches(tmp_path):
    """Keras' `fit` under a tf.distribute strategy draws one batch from a throwaway iterator
    before training: that must not move the order (`shuffle(reshuffle_each_iteration=True)`
    did: the second iterator got the next order), or a seeded run under MirroredStrategy trains
    on other samples than without one. Epochs still come in new orders."""
    samples = []
    for index in range(6):   # sample i: a mask filled with i, so batches show the order
        Image.fromarray(np.full((8, 8, 3), index, np.uint8)).save(tmp_path / f"{index}.png")
        write_index_png(tmp_path / f"{index}_mask.png", np.full((8, 8), index, np.uint8))
        samples.append(Sample(image=tmp_path / f"{index}.png",
                              mask=tmp_path / f"{index}_mask.png", stem=str(index)))
    options = PipelineOptions(height=8, width=8, batch_size=2, n_classes=6, seed=4,
                              scale_range=(1.0, 1.0), flip=False)
    dataset = DataGenerator(samples, options, training=True).dataset(repeat=True)

    def order(batches):
        return [int(m[0, 0, 0]) for _, masks in dataset.take(batches) for m in masks.numpy()]

    next(iter(dataset))   # the throwaway iterator
    first, again = order(12), order(12)   # 4 epochs of 3 batches
    assert first == again
    epochs = [first[i:i + 6] for i in range(0, 24, 6)]
    assert all(sorted(epoch) == list(range(6)) for epoch in epochs)
    assert len({tuple(epoch) for epoch in epochs}) > 1


def test_color_jitter_changes_the_image_not_the_mask(tmp_path):
    sample = coordinate_sample(tmp_path)
    plain, jittered = batches(sample, 9), batches(sample, 9, color_jitter=0.4)
    for (i1, m1), (i2, m2) in zip(plain, jittered):
        np.testing.assert_array_equal(m1, m2)          # same geometry: same seed streams
        assert np.abs(i1 - i2).mean() > 0.01
        assert 0.0 <= i2.min() and i2.max() <= 1.0
