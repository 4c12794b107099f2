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

import collections
import functools
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from fcn_keras.classes import IGNORE_INDEX
from fcn_keras.errors import DataError
from fcn_keras.io_utils import check_image, read_index_mask

# What a bad file inside tf.data surfaces as (decode ops: InvalidArgument; a file gone: NotFound;
# the mask reader's DataError inside numpy_function: Unknown).
PIPELINE_ERRORS = (tf.errors.InvalidArgumentError, tf.errors.NotFoundError,
                   tf.errors.UnknownError, tf.errors.DataLossError)
MAX_NAMED = 20   # unreadable files named in one error


@dataclass
class PipelineOptions:
    height: int
    width: int
    batch_size: int
    n_classes: int
    ignore_index: int = IGNORE_INDEX
    scale_range: tuple[float, float] = (0.75, 1.25)
    flip: bool = True
    parallel_calls: int | None = None   # None: tf.data.AUTOTUNE
    shuffle_buffer: int = 256
    seed: int | None = None
    color_jitter: float = 0.0
    # Keep the shuffled order through the parallel maps when training too: multi-worker DATA
    # sharding needs every worker to see the same sequence (with the same shuffle seed).
    deterministic: bool = False


def _read_mask(path) -> np.ndarray:
    path = path.decode() if isinstance(path, bytes) else str(path)
    return read_index_mask(path)[..., None]


# The last DataErrors raised inside tf.data by `_read_checked_mask`, newest last: TensorFlow
# passes them on as an op error whose text is its own, so `names_unreadable_files` reads them
# here instead of decoding every file to find the culprit.
PIPELINE_FAILURES: collections.deque = collections.deque(maxlen=MAX_NAMED)
# Hashes of the (image, mask) pairs `_read_checked_mask` has passed: each pair is checked the
# first time it is read, not every epoch (a few MB for 100,000 pairs).
_CHECKED_PAIRS: set[int] = set()


def _read_checked_mask(image_path, mask_path) -> np.ndarray:
    """`_read_mask` after the checks validation leaves to the pipeline for long splits
    (`datasets.checks.FULL_CHECK_LIMIT`): the image's (`check_image`: header, format, PNG
    checksums, JPEG end marker) and the mask's (mode, size = the image's), the first time the
    pair is read in this process."""
    image_path, mask_path = (p.decode() if isinstance(p, bytes) else str(p)
                             for p in (image_path, mask_path))
    pair = hash((image_path, mask_path))
    try:
        size = None if pair in _CHECKED_PAIRS else check_image(image_path)
        mask = read_index_mask(mask_path)
        if size is not None and mask.shape != (size[1], size[0]):
            raise DataError(f"{mask_path}: mask is {mask.shape[1]}x{mask.shape[0]} but image "
                            f"{image_path} is {size[0]}x{size[1]} (width x height)")
    except DataError as exc:
        PIPELINE_FAILURES.append(str(exc))
        raise
    _CHECKED_PAIRS.add(pair)
    return mask[..., None]


def load_image(path: tf.Tensor, channels: int = 3) -> tf.Tensor:
    """Decode any PNG/JPEG/BMP/GIF into uint8 HxWxC (greyscale expanded, alpha dropped)."""
    data = tf.io.read_file(path)
    image = tf.io.decode_image(data, channels=channels, expand_animations=False, dtype=tf.uint8)
    image.set_shape([None, None, channels])
    return image


def load_mask(path: tf.Tensor, image_path: tf.Tensor | None = None) -> tf.Tensor:
    """Read an index mask (mode L or P) as uint8 HxWx1 of raw class indices; with `image_path`,
    after `_read_checked_mask`'s checks of the image and the mask."""
    if image_path is None:
        mask = tf.numpy_function(_read_mask, [path], tf.uint8, stateful=False)
    else:
        mask = tf.numpy_function(_read_checked_mask, [image_path, path], tf.uint8,
                                 stateful=False)
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
    catches the rest (a file changed after validation, damage inside the compressed data), and
    in long splits, whose per-file checks the pipeline makes itself, the files it names."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        PIPELINE_FAILURES.clear()
        try:
            return method(self, *args, **kwargs)
        except PIPELINE_ERRORS as exc:
            problems = list(dict.fromkeys(PIPELINE_FAILURES))   # named by the pipeline itself
            if not problems:
                samples = [s for split in self.dataset.splits.values() for s in split]
                problems = unreadable_files(samples, self.config.channels)
            if not problems:
                raise
            shown = problems[:MAX_NAMED] + ([f"and {len(problems) - MAX_NAMED} more"]
                                            if len(problems) > MAX_NAMED else [])
            raise DataError(f"{self.dataset.root}: the input pipeline stopped ("
                            f"{type(exc).__name__}) on {len(problems)} unreadable file(s):\n  "
                            + "\n  ".join(shown)) from None
    return wrapper


def normalize(image: tf.Tensor) -> tf.Tensor:
    """uint8 [0, 255] -> float32 [0, 1], the range the book's `img_as_float` gave the model."""
    return tf.cast(image, tf.float32) / 255.0


# The random decisions of one training sample, each drawn from its own stream. (Drawing them all
# with one op seed, as `tf.random.uniform(..., seed=seed)` in each function did, made them equal
# under a global seed: a crop was flipped exactly when its scale was below 1.)
AUGMENT_STREAMS = ("scale", "top", "left", "flip", "brightness", "contrast", "saturation")


def draw_augmentation(seed, image_shape, options: "PipelineOptions") -> dict:
    """Every random decision for one sample of `image_shape` (H, W), from its seed (int [2]).

    Each decision has its own stream split from the sample's seed, so they are independent, and
    the same seed always gives the same decisions. Returns `scale`, `size` (the rescaled H, W),
    `top`, `left` (crop offset), `flip` (bool) and the colour factors `brightness`,
    `contrast`, `saturation` (1.0 when `options.color_jitter` is 0).
    """
    seeds = tf.random.experimental.stateless_split(seed, num=len(AUGMENT_STREAMS))
    seeds = {name: seeds[i] for i, name in enumerate(AUGMENT_STREAMS)}
    low, high = options.scale_range
    scale = tf.random.stateless_uniform([], seeds["scale"], low, high) if high > low else \
        tf.constant(float(low))
    shape = tf.cast(image_shape[:2], tf.float32)
    size = tf.maximum(tf.cast(tf.round(shape * scale), tf.int32), 1)
    padded = tf.maximum(size, [options.height, options.width])
    draws = {"scale": scale, "size": size,
             "top": tf.random.stateless_uniform([], seeds["top"], 0,
                                                padded[0] - options.height + 1, tf.int32),
             "left": tf.random.stateless_uniform([], seeds["left"], 0,
                                                 padded[1] - options.width + 1, tf.int32),
             "flip": tf.logical_and(tf.constant(options.flip),
                                    tf.random.stateless_uniform([], seeds["flip"]) < 0.5)}
    jitter = options.color_jitter
    for name in ("brightness", "contrast", "saturation"):
        draws[name] = tf.random.stateless_uniform([], seeds[name], max(0.0, 1.0 - jitter),
                                                  1.0 + jitter) if jitter > 0 else \
            tf.constant(1.0)
    return draws


def rescale(image, mask, size):
    """Resize the image bilinearly and the mask with nearest neighbour to `size` (H, W)."""
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


def flip_both(image, mask, flip):
    image = tf.cond(flip, lambda: tf.reverse(image, [1]), lambda: image)
    mask = tf.cond(flip, lambda: tf.reverse(mask, [1]), lambda: mask)
    return image, mask


def color_jitter(image, brightness, contrast, saturation):
    """Scale brightness, contrast and saturation by the given factors (torchvision's
    `ColorJitter(s, s, s)` draws each in [1 - s, 1 + s]): for scenes shot in other light."""
    if image.shape[-1] != 3:
        return image
    image = image * brightness
    mean = tf.reduce_mean(tf.image.rgb_to_grayscale(image))
    image = (image - mean) * contrast + mean
    grey = tf.image.rgb_to_grayscale(image)
    image = (image - grey) * saturation + grey
    return tf.clip_by_value(image, 0.0, 1.0)


def augment(image, mask, options: PipelineOptions, seed):
    """Paired scale + pad + crop + flip (+ colour jitter of the image); image float32 [0, 1],
    mask uint8. `seed` (int [2]) is this sample's: the same seed gives the same sample."""
    draw = draw_augmentation(seed, tf.shape(image), options)
    image = normalize(image)
    if options.scale_range != (1.0, 1.0):
        image, mask = rescale(image, mask, draw["size"])
    h, w = options.height, options.width
    image, mask = pad_to_at_least(image, mask, h, w, options.ignore_index)
    top, left = draw["top"], draw["left"]
    image, mask = image[top:top + h, left:left + w], mask[top:top + h, left:left + w]
    image, mask = flip_both(image, mask, draw["flip"])
    if options.color_jitter > 0:
        image = color_jitter(image, draw["brightness"], draw["contrast"], draw["saturation"])
    image.set_shape([h, w, None])
    mask.set_shape([h, w, 1])
    return image, mask


def base_seed(seed: int | None) -> int:
    """`--seed`, or (none given) one drawn at random, so every run differs."""
    return seed if seed is not None else int(np.random.SeedSequence().generate_state(1)[0])


def sample_seed_dataset(seed: int | None) -> tf.data.Dataset:
    """An endless dataset of per-sample seeds (int64 [2]): `(base, i)` for the i-th sample.

    A fixed `--seed` makes the whole augmentation sequence repeat exactly; without one the base is
    drawn at random, so every run differs."""
    base = base_seed(seed)
    return tf.data.Dataset.counter().map(lambda i: tf.stack([tf.constant(base, tf.int64), i]))


def epoch_orders(count: int, seed: int | None, epochs: int | None = None) -> tf.data.Dataset:
    """The indices 0..count-1 in a new random order for every epoch, for `epochs` epochs
    (None: endless). The order of epoch e is a stateless shuffle seeded with `(base, -1 - e)`
    (the per-sample seeds are `(base, i)`, i >= 0, so the two never meet).

    Stateless, unlike `Dataset.shuffle(reshuffle_each_iteration=True)`, whose seed generator
    gives every new iterator of the same dataset the next order: Keras' `fit` under a
    tf.distribute strategy takes one batch from a throwaway iterator before training (its
    `_maybe_symbolic_build`), so with `shuffle` a seeded run trained on other samples under
    `--strategy mirrored` than without a strategy or in the multi-worker loop. Here every
    iterator starts with epoch 0's order."""
    base = tf.constant(base_seed(seed), tf.int64)
    epochs_ds = tf.data.Dataset.counter() if epochs is None else tf.data.Dataset.range(epochs)

    def order(epoch):
        seed_pair = tf.stack([base, -1 - tf.cast(epoch, tf.int64)])
        return tf.data.Dataset.from_tensor_slices(
            tf.random.experimental.stateless_shuffle(tf.range(count, dtype=tf.int64),
                                                     seed_pair))

    return epochs_ds.flat_map(order)


class DataGenerator:
    """The book's `DataGenerator`: yields (image, mask) batches for train / val / test.

    Built from a list of `Sample`s (image and mask paths) of one split; `dataset()` returns a
    `tf.data.Dataset` of `(float32 images [0, 1], uint8 masks HxWx1)` batches. `check_files`:
    check each image and mask as it is read (`_read_checked_mask`), for the long splits whose
    per-file checks validation left to the pipeline (`SegmentationDataset.deferred`).
    """

    def __init__(self, samples, options: PipelineOptions, training: bool, channels: int = 3,
                 check_files: bool = False):
        if not samples:
            raise DataError("empty split: no images to train or evaluate on")
        self.samples = list(samples)
        self.options = options
        self.training = training
        self.channels = channels
        self.check_files = check_files

    def __len__(self) -> int:
        """Batches per epoch (the book's `Sequence.__len__`)."""
        size = self.options.batch_size
        if self.training:
            return max(1, len(self.samples) // size)
        return -(-len(self.samples) // size)

    @property
    def n_classes(self) -> int:
        return self.options.n_classes

    def _paths(self, order: tf.data.Dataset | None = None):
        """(image path, mask path) of each sample, in `order` (a dataset of indices) if given."""
        images = tf.constant([str(s.image) for s in self.samples])
        masks = tf.constant([str(s.mask) for s in self.samples])
        if order is None:
            return tf.data.Dataset.from_tensor_slices((images, masks))
        return order.map(lambda i: (tf.gather(images, i), tf.gather(masks, i)))

    def _load(self, image_path, mask_path):
        if not self.check_files:
            return load_image(image_path, self.channels), load_mask(mask_path)
        # The checks first: a bad file stops here with its name, not in TensorFlow's decoder.
        mask = load_mask(mask_path, image_path)
        with tf.control_dependencies([mask]):
            image = load_image(image_path, self.channels)
        return image, mask

    def dataset(self, repeat: bool = False) -> tf.data.Dataset:
        opts = self.options
        calls = opts.parallel_calls or tf.data.AUTOTUNE
        if self.training:  # a new order every epoch; `repeat`: endless epochs
            base = base_seed(opts.seed)   # one base for the orders and the augmentations
            ds = self._paths(epoch_orders(len(self.samples), base, None if repeat else 1))
        else:
            ds = self._paths()
        # With a --seed the order must not depend on thread timing, or the same seed would pair
        # images with other augmentations in the next run.
        ordered = opts.deterministic or opts.seed is not None
        ds = ds.map(self._load, num_parallel_calls=calls,
                    deterministic=ordered or not self.training)
        if self.training:   # the seeds count on across epochs: every epoch gets new ones
            ds = tf.data.Dataset.zip(ds, sample_seed_dataset(base))
            ds = ds.map(lambda images, seed: augment(*images, opts, seed),
                        num_parallel_calls=calls, deterministic=ordered)
            ds = ds.batch(opts.batch_size, drop_remainder=True)
        else:
            ds = ds.map(lambda i, m: (normalize(i), m), num_parallel_calls=calls)
            ds = ds.padded_batch(opts.batch_size,
                                 padding_values=(0.0, tf.constant(opts.ignore_index, tf.uint8)))
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = \
            tf.data.experimental.AutoShardPolicy.DATA
        return ds.with_options(options).prefetch(tf.data.AUTOTUNE)
