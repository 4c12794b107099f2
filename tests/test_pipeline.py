"""The tf.data pipeline: dtypes, shapes, paired augmentation alignment, padding, evaluation."""

import numpy as np
import pytest
from PIL import Image

tf = pytest.importorskip("tensorflow")

from fcn_keras.formats import Sample  # noqa: E402
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
    sample = coordinate_sample(tmp_path)
    options = PipelineOptions(height=32, width=48, batch_size=4, n_classes=3,
                              scale_range=(0.6, 1.8), seed=3)
    for images, masks in DataGenerator([sample] * 8, options, training=True).dataset():
        masks = masks.numpy()[..., 0]
        pixels = np.round(images.numpy() * 255).astype(np.uint8)
        valid = masks != 255
        agreement = (masks == expected_mask(pixels))[valid].mean()
        assert agreement > 0.8  # nearest vs bilinear differ only at class borders


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
