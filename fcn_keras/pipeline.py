"""The input pipeline: the book's `DataGenerator`, rebuilt on `tf.data`.

Images are decoded by TensorFlow in parallel; masks (index PNGs, often palette 'P' images,
which `tf.io.decode_png` would expand to colours) are read as raw indices with PIL. Training
samples get a paired random scale, random crop and horizontal flip: the image is resized
bilinearly, the mask with nearest neighbour, and areas outside the image are padded with the
ignore index so they count in neither loss nor metrics. Images smaller than the crop are
padded, not dropped (the d2l chapter drops them). Masks stay sparse integer labels.
Nothing is held in memory beyond the prefetch buffers, so memory does not grow with the dataset.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from fcn_keras.errors import DataError
from fcn_keras.io_utils import check_image, read_index_mask

# What a bad file inside tf.data surfaces as (decode ops: InvalidArgument; a file gone: NotFound;
# the mask reader's DataError inside numpy_function: Unknown).
PIPELINE_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.NotFoundError,
                   tf.errors.UnknownError, tf.errors.DataLossError)


@dataclass
class PipelineOptions:
    height: int
    width: int
    batch_size: int
    n_classes: int
    ignore_index: int = 255
    scale_range: tuple[float, float] = (0.75, 1.25)
    flip: bool = True
    parallel_calls: int | None = None   # None: tf.data.AUTOTUNE
    shuffle_buffer: int = 256
    seed: int | None = None
    # Keep the shuffled order through the parallel maps when training too: multi-worker DATA
    # sharding needs every worker to see the same sequence (with the same shuffle seed).
    deterministic: bool = False


def _read_mask(path) -> np.ndarray:
    path = path.decode() if isinstance(path, bytes) else str(path)
    return read_index_mask(path)[..., None]


def load_image(path: tf.Tensor, channels: int = 3) -> tf.Tensor:
    """Decode any PNG/JPEG/BMP/GIF into uint8 HxWxC (greyscale expanded, alpha dropped)."""
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=channels, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, channels])
    return image


def load_mask(path: tf.Tensor) -> tf.Tensor:
    """Read an index mask (mode L or P) as uint8 HxWx1 of raw class indices."""
    mask = tf.numpy_function(_read_mask, [path], tf.uint8, stateful=False)
    mask.set_shape([None, None, 1])
    return mask


def read_rgb(path, channels: int = 3) -> np.ndarray:
    """Decode one image file to uint8 HxWxC for prediction, with a clear error if unreadable.

    The header is checked first, so a file claiming a huge size (a decompression bomb) is
    refused before TensorFlow tries to allocate it.
    """
    check_image(path)
    try:
        return load_image(tf.constant(str(path)), channels).numpy()
    except PIPELINE_ERRORS as exc:
        raise DataError(f"{path}: not a readable image ({_first_line(exc)})") from None


def _first_line(exc: tf.errors.OpError) -> str:
    lines = [line for line in str(exc.message).splitlines() if line.strip()]
    text = lines[-1] if lines else type(exc).__name__
    return text.split("}} ")[-1].split(" [Op:")[0].strip()[:200]


def unreadable_files(samples, channels: int = 3) -> list[str]:
    """Decode every image (as the pipeline does) and mask of `samples`: one line per failure.

    Slow (a full decode of everything); called only after the pipeline has failed, to name the
    file behind an error that TensorFlow reports without one.
    """
    problems, seen = [], set()
    for sample in samples:
        if sample.image not in seen:
            seen.add(sample.image)
            try:
                load_image(tf.constant(str(sample.image)), channels)
            except PIPELINE_ERRORS as exc:
                problems.append(f"{sample.image}: cannot be decoded ({_first_line(exc)})")
        if sample.mask is not None and sample.mask not in seen:
            seen.add(sample.mask)
            try:
                read_index_mask(sample.mask)
            except DataError as exc:
                problems.append(str(exc))
    return problems


def names_unreadable_files(method):
    """Decorate a method of an object with `dataset` and `config` (the app's `FCN`) that runs
    the pipeline: a TensorFlow error caused by a file that cannot be decoded becomes a DataError
    naming the file(s). Validation's cheap checks catch nearly all such files up front; this
    catches the rest (a file changed after validation, damage inside the compressed data)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except PIPELINE_ERRORS as exc:
            samples = [s for split in self.dataset.splits.values() for s in split]
            problems = unreadable_files(samples, self.config.channels)
            if not problems:
                raise
            shown = problems[:20] + ([f"and {len(problems) - 20} more"] if len(problems) > 20
                                     else [])
            raise DataError(f"{self.dataset.root}: the input pipeline stopped ("
                            f"{type(exc).__name__}) on {len(problems)} unreadable file(s):\n  "
                            + "\n  ".join(shown)) from None
    return wrapper


def normalize(image: tf.Tensor) -> tf.Tensor:
    """uint8 [0, 255] -> float32 [0, 1], the range the book's `img_as_float` gave the model."""
    return tf.cast(image, tf.float32) / 255.0


def random_scale(image, mask, scale_range, seed=None):
    low, high = scale_range
    if low == high == 1.0:
        return image, mask
    scale = tf.random.uniform([], low, high, seed=seed)
    size = tf.cast(tf.round(tf.cast(tf.shape(image)[:2], tf.float32) * scale), tf.int32)
    size = tf.maximum(size, 1)
    image = tf.image.resize(image, size, method="bilinear")
    mask = tf.image.resize(mask, size, method="nearest")
    return image, mask


def pad_to_at_least(image, mask, height, width, ignore_index):
    """Pad bottom/right so the sample is at least `height` x `width` (mask with ignore)."""
    shape = tf.shape(image)
    pad_h = tf.maximum(height - shape[0], 0)
    pad_w = tf.maximum(width - shape[1], 0)
    paddings = [[0, pad_h], [0, pad_w], [0, 0]]
    image = tf.pad(image, paddings, constant_values=0)
    mask = tf.pad(mask, paddings, constant_values=ignore_index)
    return image, mask


def random_crop(image, mask, height, width, seed=None):
    """Crop image and mask at the same random offset."""
    shape = tf.shape(image)
    top = tf.random.uniform([], 0, shape[0] - height + 1, dtype=tf.int32, seed=seed)
    left = tf.random.uniform([], 0, shape[1] - width + 1, dtype=tf.int32, seed=seed)
    image = image[top:top + height, left:left + width]
    mask = mask[top:top + height, left:left + width]
    return image, mask


def random_flip(image, mask, seed=None):
    flip = tf.random.uniform([], 0, 1, seed=seed) < 0.5
    image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    mask = tf.cond(flip, lambda: tf.reverse(mask, [1]), lambda: mask)
    return image, mask


def augment(image, mask, options: PipelineOptions):
    """Paired scale + pad + crop + flip; image float32 [0, 1], mask uint8."""
    image = normalize(image)
    image, mask = random_scale(image, mask, options.scale_range, options.seed)
    image, mask = pad_to_at_least(image, mask, options.height, options.width,
                                  options.ignore_index)
    image, mask = random_crop(image, mask, options.height, options.width, options.seed)
    if options.flip:
        image, mask = random_flip(image, mask, options.seed)
    image.set_shape([options.height, options.width, None])
    mask.set_shape([options.height, options.width, 1])
    return image, mask


class DataGenerator:
    """The book's `DataGenerator`: yields (image, mask) batches for train / val / test.

    Built from a list of `Sample`s (image and mask paths) of one split; `dataset()` returns a
    `tf.data.Dataset` of `(float32 images [0, 1], uint8 masks HxWx1)` batches.
    """

    def __init__(self, samples, options: PipelineOptions, training: bool, channels: int = 3):
        if not samples:
            raise DataError("empty split: no images to train or evaluate on")
        self.samples = list(samples)
        self.options = options
        self.training = training
        self.channels = channels

    def __len__(self) -> int:
        """Batches per epoch (the book's `Sequence.__len__`)."""
        size = self.options.batch_size
        if self.training:
            return max(1, len(self.samples) // size)
        return -(-len(self.samples) // size)

    @property
    def n_classes(self) -> int:
        return self.options.n_classes

    def _paths(self):
        images = [str(s.image) for s in self.samples]
        masks = [str(s.mask) for s in self.samples]
        return tf.data.Dataset.from_tensor_slices((images, masks))

    def _load(self, image_path, mask_path):
        return load_image(image_path, self.channels), load_mask(mask_path)

    def dataset(self, repeat: bool = False) -> tf.data.Dataset:
        opts = self.options
        calls = opts.parallel_calls or tf.data.AUTOTUNE
        ds = self._paths()
        if self.training:
            ds = ds.shuffle(len(self.samples), seed=opts.seed, reshuffle_each_iteration=True)
        ds = ds.map(self._load, num_parallel_calls=calls,
                    deterministic=opts.deterministic or not self.training)
        if self.training:
            ds = ds.map(lambda i, m: augment(i, m, opts), num_parallel_calls=calls,
                        deterministic=opts.deterministic)
            if repeat:
                ds = ds.repeat()
            ds = ds.batch(opts.batch_size, drop_remainder=True)
        else:
            ds = ds.map(lambda i, m: (normalize(i), m), num_parallel_calls=calls)
            ds = ds.padded_batch(opts.batch_size,
                                 padding_values=(0.0, tf.constant(opts.ignore_index, tf.uint8)))
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
