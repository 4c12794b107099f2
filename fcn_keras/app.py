"""The book's `FCN` class: a model and its data, with train / evaluate / predict / export.

`fcn.py` builds one from the parsed `Config`; everything it needs comes from there. `FCN` is a
facade, kept as the book has it for the command line, the tests and `fcn_keras.api`: it builds
the model and holds what a run shares (config, model, strategy, classes, dataset, save paths),
and each verb is a few lines handing over to its module, in the manner of torchvision's
references/segmentation `train.py`:

- data: `fcn_keras.data` (the dataset, its classes, the fitted crop, the generators)
- training: `fcn_keras.training` (strategy, optimizer, resume, fit or multi-worker loop)
- weights: `fcn_keras.restore` (loading a weights file, with a clear error when it is bad)
- evaluation: `fcn_keras.evaluate`; prediction: `fcn_keras.predict`; export: `fcn_keras.export`
"""

from __future__ import annotations

from pathlib import Path

from fcn_keras import data, training
from fcn_keras.api import image_files  # noqa: F401 (app's API)
from fcn_keras.classes import ClassInfo
from fcn_keras.config import Config, check_training_size, resolve_weights_path
from fcn_keras.models import build_model
from fcn_keras.pipeline import DataGenerator, names_unreadable_files
from fcn_keras.predict import padding_multiple
from fcn_keras.restore import check_weights_file, load_weights  # noqa: F401 (app's API)
from fcn_keras.runtime import log


class FCN:
    """Made of an FCN model and its dataset; trains, evaluates and predicts."""

    def __init__(self, config: Config):
        self.config = config
        self._dataset = None
        self.time_limit = None      # set by training (`fcn_keras.training`), with `schedule`
        self.classes = self._find_classes()
        self.strategy, self.watchdog = training.strategy_for(config)
        with self.strategy.scope():
            self.model, self.backbone = build_model(n_classes=self.classes.n_classes,
                                                    **config.model_options())
        training.prepare_model(self.model, config)
        if config.train and config.auto_crop:
            self.config = config = data.crop_for_the_data(config, self.dataset,
                                                          padding_multiple(self.model))
        check_training_size(config, padding_multiple(self.model))
        self.save_dir = Path(config.save_dir)
        self.weights_path = self.save_dir / config.weights_name

    # data ------------------------------------------------------------------------------------
    @property
    def dataset(self):
        """The dataset of `--data-path`, read on first use (predicting images needs none)."""
        if self._dataset is None:
            self._dataset = data.load(self.config)
        return self._dataset

    def _find_classes(self) -> ClassInfo:
        """Classes of the dataset, or (predicting images only) those saved beside the weights."""
        return data.find_classes(self.config, lambda: self.dataset)

    def generator(self, split: str, training: bool) -> DataGenerator:
        """The generator of one split, augmented when `training` (`fcn_keras.data`)."""
        return data.generator(self.dataset, split, self.config, self.classes, training)

    # the verbs -------------------------------------------------------------------------------
    @names_unreadable_files
    def train(self) -> None:
        """Train on `train`, validating `val` after every epoch (`fcn_keras.training.train`):
        `model.fit`, or the custom loop under MultiWorkerMirroredStrategy; the `--save-dir` is
        locked meanwhile (`fcn_keras.runlock`): one run per folder."""
        training.train(self)

    def restore_weights(self) -> None:
        """Load `--restore-weights` (or the best weights just trained)."""
        path = self._weights_in_use()
        log(self.config, f"Loading weights: {path}")
        load_weights(self.model, path, self.config)

    def _weights_in_use(self) -> Path:
        c = self.config
        return resolve_weights_path(c) if c.restore_weights else self.weights_path

    @names_unreadable_files
    def evaluate(self) -> dict:
        """Metrics on `--split` (default test, else val), table, JSON report and figures."""
        from fcn_keras.evaluate import default_split, evaluate
        split = default_split(self.config, self.dataset)
        return evaluate(self.model, self.classes, self.generator(split, training=False), split,
                        self.config, self._weights_in_use())

    def predict_files(self, target: str) -> list[Path]:
        """Segment one image or every image of a folder: `<stem>-mask.png`, `<stem>-overlay.png`,
        and with `--via-out` the same masks as polygons of a VIA project file."""
        from fcn_keras.predict import predict_files
        return predict_files(self.model, self.classes, self.config, target)

    def export(self, directory: str) -> None:
        """`--export DIR`: the model's files for serving (`fcn_keras.export.export_model`)."""
        from fcn_keras.export import export_model
        export_model(self.model, Path(directory), self.classes, self.config,
                     tflite_size=self.config.export_size)
