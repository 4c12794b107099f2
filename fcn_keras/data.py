"""The data verbs of the facade (`fcn_keras.app.FCN`): the dataset a config names, its
classes, the training crop fitted to it, and the generators that feed training and scoring.

They live here, not in the facade, so that each is a short function of the config that can be
read (and tested) without building a model; the facade only keeps the loaded dataset.
"""

from __future__ import annotations

from pathlib import Path

from fcn_keras.classes import ClassInfo
from fcn_keras.errors import DataError
from fcn_keras.pipeline import DataGenerator, PipelineOptions
from fcn_keras.runtime import log


def load(config):
    """The dataset of `--data-path` in `--data-format`, split as the config asks."""
    from fcn_keras.datasets import load_dataset
    c = config
    return load_dataset(c.data_path, c.data_format, allow_pickle=c.allow_pickle,
                        train_labels=c.train_labels, test_labels=c.test_labels,
                        val_fraction=c.val_fraction, classes=c.classes, attribute=c.attribute)


def saved_classes_file(config) -> Path | None:
    """The `.classes.json` beside `--restore-weights`, if there is one."""
    if not config.restore_weights:
        return None
    from fcn_keras.config import resolve_weights_path
    from fcn_keras.sidecar import beside
    candidate = beside(resolve_weights_path(config), ".classes.json")
    return candidate if candidate.exists() else None


def find_classes(config, dataset) -> ClassInfo:
    """Classes of the dataset, or (predicting images only) those saved beside the weights;
    `dataset` is called only when needed, so predicting images reads no dataset."""
    saved = saved_classes_file(config)
    if saved is not None and config.image_file and not config.train:
        return ClassInfo.load(saved)
    return dataset().classes


def crop_for_the_data(config, dataset, multiple: int):
    """--height/--width not given: the training crop follows the training images
    (`fcn_keras.crop.fit_crop`: the median image rounded up to the network stride `multiple`,
    at most the book's 480x640), so small images are not padded to 480x640 with ignored
    pixels. Returns the config with that crop."""
    from fcn_keras.crop import fit_crop, image_sizes, median_size
    sizes = image_sizes(dataset.split("train"))
    height, width = fit_crop(sizes, multiple, (config.height, config.width))
    median = median_size(sizes)
    log(config, f"Training crop {height}x{width} (height x width), fitted to the median "
                f"training image {median[0]}x{median[1]}; --height/--width choose another")
    return config.replace(height=height, width=width)


def pipeline_options(config, classes: ClassInfo, training: bool) -> PipelineOptions:
    """The pipeline's options; augmentation (scale range, colour jitter) only for training."""
    c = config
    return PipelineOptions(height=c.height, width=c.width, batch_size=c.batch_size,
                           n_classes=classes.n_classes, ignore_index=classes.ignore_index,
                           scale_range=c.scale_range if training else (1.0, 1.0),
                           parallel_calls=c.workers, seed=c.seed,
                           color_jitter=c.color_jitter if training else 0.0)


def generator(dataset, split: str, config, classes: ClassInfo, training: bool) -> DataGenerator:
    """The generator of one split; a split with unlabelled images is refused (it can be
    neither trained on nor scored)."""
    samples = dataset.split(split)
    unlabelled = [s for s in samples if s.mask is None]
    if unlabelled:
        raise DataError(f"{dataset.root}: split '{split}' has {len(unlabelled)} "
                        f"image(s) without masks (e.g. {unlabelled[0].image}); it cannot be "
                        "trained or scored: use --split val, or --image-file to predict")
    return DataGenerator(samples, pipeline_options(config, classes, training), training,
                         config.channels, check_files=split in dataset.deferred)
