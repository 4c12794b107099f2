"""The book's `FCN` class: a model and its data, with train / evaluate / predict / export.

`fcn.py` builds one from the parsed `Config`; everything it needs comes from there.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from fcn_keras import distributed, fault_injection, visualize
from fcn_keras.api import Segmenter, image_files  # noqa: F401 (image_files: app's API)
from fcn_keras.callbacks import (
    AccuracyCallback,
    History,
    InterruptGuard,
    NanGuard,
    PaceReport,
    TimeLimit,
    TrainingInterrupted,
    TrainingState,
    make_schedule,
)
from fcn_keras.classes import ClassInfo
from fcn_keras.config import Config, check_training_size, resolve_weights_path
from fcn_keras.errors import ConfigError, DataError, FCNError, OutputError
from fcn_keras.evaluate import WorstImages, score_split, write_report
from fcn_keras.io_utils import write_index_png
from fcn_keras.losses import SegmentationLoss, class_pixel_counts, load_class_weights
from fcn_keras.metrics import format_table
from fcn_keras.models import build_model
from fcn_keras.pipeline import DataGenerator, PipelineOptions, names_unreadable_files
from fcn_keras.predict import Predictor, padding_multiple
from fcn_keras.runlock import SaveDirLock
from fcn_keras.sidecar import beside, write_settings
from fcn_keras.strategy import choose_strategy, is_chief, strategy_name
from fcn_keras.watchdog import Watchdog


def log(config: Config, message: str, level: int = 1) -> None:
    if config.verbose >= level:
        print(message, flush=True)


class FCN:
    """Made of an FCN model and its dataset; trains, evaluates and predicts."""

    def __init__(self, config: Config):
        self.config = config
        self._dataset = None
        self.time_limit = None
        self.classes = self._find_classes()
        self.watchdog = None
        if config.train and strategy_name(config.strategy) == "multiworker":
            # started before the strategy, which waits for the whole cluster to connect
            self.watchdog = Watchdog(config.worker_timeout).start()
        self.strategy = choose_strategy(config.strategy) if config.train else \
            tf.distribute.get_strategy()
        with self.strategy.scope():
            self.model, self.backbone = build_model(n_classes=self.classes.n_classes,
                                                    **config.model_options())
        if config.sync_bn:
            distributed.synchronize_batch_norm(self.model)
        if config.remat and config.train:
            from fcn_keras.remat import enable_remat
            enable_remat(self.model)
        if config.train and config.auto_crop:
            self.config = config = self._crop_for_the_data(config)
        check_training_size(config, padding_multiple(self.model))
        self.save_dir = Path(config.save_dir)
        self.weights_path = self.save_dir / config.weights_name

    # data ------------------------------------------------------------------------------------
    @property
    def dataset(self):
        if self._dataset is None:
            from fcn_keras.datasets import load_dataset
            c = self.config
            self._dataset = load_dataset(
                c.data_path, c.data_format, allow_pickle=c.allow_pickle,
                train_labels=c.train_labels, test_labels=c.test_labels,
                val_fraction=c.val_fraction, classes=c.classes, attribute=c.attribute)
        return self._dataset

    def _classes_file(self) -> Path | None:
        if self.config.restore_weights:
            weights = resolve_weights_path(self.config)
            candidate = beside(weights, ".classes.json")
            if candidate.exists():
                return candidate
        return None

    def _find_classes(self) -> ClassInfo:
        """Classes of the dataset, or (predicting images only) those saved beside the weights."""
        saved = self._classes_file()
        if saved is not None and self.config.image_file and not self.config.train:
            return ClassInfo.load(saved)
        return self.dataset.classes

    def _crop_for_the_data(self, config: Config) -> Config:
        """--height/--width not given: the training crop follows the training images
        (`fcn_keras.crop.fit_crop`: the median image rounded up to the network stride, at most
        the book's 480x640), so small images are not padded to 480x640 with ignored pixels."""
        from fcn_keras.crop import fit_crop, image_sizes, median_size
        sizes = image_sizes(self.dataset.split("train"))
        height, width = fit_crop(sizes, padding_multiple(self.model),
                                 (config.height, config.width))
        median = median_size(sizes)
        log(config, f"Training crop {height}x{width} (height x width), fitted to the median "
                    f"training image {median[0]}x{median[1]}; --height/--width choose another")
        return config.replace(height=height, width=width)

    def _options(self, training: bool) -> PipelineOptions:
        c = self.config
        return PipelineOptions(height=c.height, width=c.width, batch_size=c.batch_size,
                               n_classes=self.classes.n_classes,
                               ignore_index=self.classes.ignore_index,
                               scale_range=c.scale_range if training else (1.0, 1.0),
                               parallel_calls=c.workers, seed=c.seed,
                               color_jitter=c.color_jitter if training else 0.0)

    def generator(self, split: str, training: bool) -> DataGenerator:
        samples = self.dataset.split(split)
        unlabelled = [s for s in samples if s.mask is None]
        if unlabelled:
            raise DataError(f"{self.dataset.root}: split '{split}' has {len(unlabelled)} "
                            f"image(s) without masks (e.g. {unlabelled[0].image}); it cannot be "
                            "trained or scored: use --split val, or --image-file to predict")
        return DataGenerator(samples, self._options(training), training, self.config.channels,
                             check_files=split in self.dataset.deferred)

    # training --------------------------------------------------------------------------------
    def _optimizer(self):
        c = self.config
        if c.optimizer == "sgd":
            return keras.optimizers.SGD(c.lr, momentum=0.9, weight_decay=c.weight_decay or None)
        if c.optimizer == "adamw":
            return keras.optimizers.AdamW(c.lr, weight_decay=c.weight_decay or 1e-4)
        return keras.optimizers.Adam(c.lr, weight_decay=c.weight_decay or None)

    def _class_weights(self):
        n_classes = self.classes.n_classes
        return load_class_weights(self.config.class_weights, n_classes,
                                  lambda: class_pixel_counts(self.dataset.split("train"),
                                                             n_classes))

    @names_unreadable_files
    def train(self) -> None:
        """Train on `train`, validating `val` after every epoch: `model.fit` under the chosen
        strategy, or under MultiWorkerMirroredStrategy (where Keras 3's fit fails) the custom
        loop of `fcn_keras.distributed`, which shares everything with fit but the step.
        The `--save-dir` is locked meanwhile (`fcn_keras.runlock`): one run per folder."""
        train_gen, val_gen = self._training_generators()
        try:
            with SaveDirLock(self.save_dir, enabled=is_chief()):
                self._train(train_gen, val_gen)
        finally:
            if self.watchdog is not None:
                self.watchdog.stop()

    def _train(self, train_gen, val_gen) -> None:
        c = self.config
        optimizer = self._compile()
        history, state, initial_epoch = self._resume_state(optimizer)
        multiworker = distributed.is_multiworker(self.strategy)
        accuracy = self._accuracy_callback(val_gen, history, state, multiworker)
        if initial_epoch:   # a damaged history (moved aside) must not lower the best so far
            accuracy.best = max(accuracy.best, float(state.best.numpy()))
        if multiworker:  # before any early return: the workers' collectives must match
            with distributed.lost_worker_errors():
                initial_epoch = distributed.prepare_workers(self.strategy, self.model,
                                                            train_gen, accuracy, initial_epoch)
            if self.watchdog is not None:
                self.watchdog.beat()
        if initial_epoch >= c.epochs:
            log(c, f"Nothing to do: the run already completed {initial_epoch} epochs")
            return
        nan_guard = NanGuard()
        self.schedule = self._schedule()
        self.time_limit = TimeLimit(c.time_limit, schedule=self.schedule) if c.time_limit \
            else None
        run = self._train_multiworker if multiworker else self._fit
        with InterruptGuard() as guard:
            try:
                self._save_sidecars()
                run(train_gen, initial_epoch, [nan_guard, accuracy, guard])
            except KeyboardInterrupt:
                where = f"saved in {self.save_dir}" if is_chief() else "saved by the chief"
                raise TrainingInterrupted(
                    f"training interrupted; {int(state.epoch.numpy())} epoch(s) complete, state "
                    f"{where}: continue with --resume") from None
            except OutputError as exc:   # a full disk: the last completed epoch is on disk
                raise OutputError(
                    f"training stopped: {exc}. The files of the {int(state.epoch.numpy())} "
                    f"completed epoch(s) are kept in {self.save_dir}: make room, then continue "
                    "with --resume") from None
        fault_injection.dump_weights(self.model)
        if nan_guard.stopped_at is not None:
            raise FCNError(f"training stopped: the loss became NaN/inf; the best weights so far "
                           f"are kept in {self.weights_path} (try a lower --lr)")
        if self.time_limit is not None and self.time_limit.stopped_after is not None:
            log(c, f"--time-limit {c.time_limit:g} min: stopped after "
                   f"{self.time_limit.stopped_after} epoch(s) of this run (the next would have "
                   "ended past the limit); continue with --resume")
        if is_chief():
            log(c, f"Best val mIoU {accuracy.best:.4f}; weights: {self.weights_path}")

    def _compile(self):
        """Compile the model with its optimizer and loss under the strategy; the optimizer."""
        c = self.config
        with self.strategy.scope():
            optimizer = self._optimizer()
            loss = SegmentationLoss(self.classes.n_classes, c.loss, self._class_weights())
            self.model.compile(optimizer=optimizer, loss=loss, jit_compile=bool(c.jit))
            optimizer.build(self.model.trainable_variables)
        return optimizer

    def _accuracy_callback(self, val_gen, history, state, multiworker: bool) -> AccuracyCallback:
        """The book's callback scoring `val`; in a cluster the chief's score is shared, and its
        validation is local work for the watchdog (the others wait for it)."""
        predictor = Predictor(self.model)
        val_ds = val_gen.dataset()

        def evaluate():
            if self.watchdog is None:
                return self._score(predictor, val_ds)
            with self.watchdog.local():
                return self._score(predictor, val_ds)

        share = (lambda value: distributed.share_scalar(self.strategy, value)) \
            if multiworker else None
        return AccuracyCallback(evaluate, self.weights_path, history, self.config.verbose,
                                state, chief=is_chief(), share=share)

    def _training_generators(self):
        c = self.config
        replicas = self.strategy.num_replicas_in_sync
        if c.batch_size % replicas:
            raise ConfigError(f"--batch-size {c.batch_size} must be a multiple of the "
                              f"{replicas} replicas")
        train_gen = self.generator("train", training=True)
        val_gen = self.generator("val", training=False)
        log(c, f"# of classes {self.classes.n_classes}; train {len(train_gen.samples)} images, "
               f"val {len(val_gen.samples)}")
        log(c, f"Batch size: {c.batch_size} global = {c.batch_size // replicas} per replica x "
               f"{replicas} replica(s) ({type(self.strategy).__name__})")
        return train_gen, val_gen

    def _schedule(self):
        c = self.config
        return make_schedule(c.schedule, c.lr, c.epochs, c.warmup_epochs)

    def _fit(self, train_gen, initial_epoch: int, callbacks: list) -> None:
        """`model.fit`; `callbacks` = NanGuard, AccuracyCallback, InterruptGuard (last)."""
        c = self.config
        *callbacks, guard = callbacks
        pace = PaceReport(c.epochs, lambda text: log(c, text), time_limit=c.time_limit)
        callbacks = [keras.callbacks.LearningRateScheduler(self.schedule), *callbacks, pace,
                     *fault_injection.batch_callbacks(), guard]
        if self.time_limit is not None:
            callbacks.append(self.time_limit)
        if c.tensorboard:
            callbacks.append(keras.callbacks.TensorBoard(str(self.save_dir / "tensorboard")))
        self.model.fit(train_gen.dataset(repeat=True), epochs=c.epochs,
                       steps_per_epoch=c.steps_per_epoch or len(train_gen),
                       initial_epoch=initial_epoch, callbacks=callbacks, shuffle=False,
                       verbose=1 if c.verbose == 1 else (2 if c.verbose > 1 else 0))

    def _train_multiworker(self, train_gen, initial_epoch: int, callbacks: list) -> None:
        """The custom loop of `fcn_keras.distributed`, with the same callbacks as `_fit`."""
        c = self.config
        if c.tensorboard or c.jit or c.time_limit:
            log(c, "Note: --tensorboard, --jit and --time-limit are not applied to the "
                   "multi-worker loop")
        nan_guard, accuracy, guard = callbacks
        loop = distributed.MultiWorkerLoop(self.strategy, self.model, self.schedule,
                                           accuracy, nan_guard, guard, c.verbose, self.watchdog)
        with distributed.lost_worker_errors():
            loop.run(train_gen.dataset(repeat=True), c.epochs,
                     c.steps_per_epoch or len(train_gen), initial_epoch)

    def _resume_state(self, optimizer):
        c = self.config
        stem = self.weights_path.name.replace(".weights.h5", "")
        history = History(self.save_dir, stem)
        state = TrainingState(self.save_dir / f"{stem}-state", self.model, optimizer,
                              scratch=not is_chief(), fresh=not c.resume)
        initial_epoch = 0
        if c.resume:
            if is_chief():  # temporaries of writes cut short by a crash (ours and TF's)
                for stale in [*self.save_dir.glob(f".{stem}*"),
                              *state.directory.glob("*_temp"),
                              *state.directory.glob("checkpoint.tmp*")]:
                    if stale.is_dir():
                        shutil.rmtree(stale, ignore_errors=True)
                    else:
                        stale.unlink(missing_ok=True)
            restored = state.restore()
            initial_epoch = restored or 0
            if not is_chief():  # multi-worker: the chief's state is broadcast to the others
                log(c, "--resume: this worker continues from the chief's state")
            elif restored is None:
                log(c, "--resume: no saved state found; starting from epoch 1")
            else:
                log(c, f"Resuming after epoch {initial_epoch} (best val mIoU "
                       f"{float(state.best.numpy()):.4f})")
            history.load(up_to_epoch=initial_epoch)
        return history, state, initial_epoch

    def _save_sidecars(self) -> None:
        """The classes and the model settings beside the weights (`fcn_keras.sidecar`)."""
        if is_chief():
            self.classes.save(beside(self.weights_path, ".classes.json"))
            write_settings(self.weights_path, self.config, self.classes.n_classes)

    def _score(self, predictor, dataset, on_image=None) -> dict:
        return score_split(predictor, dataset, self.classes.n_classes,
                           self.classes.ignore_index, on_image)

    # weights ---------------------------------------------------------------------------------
    def restore_weights(self) -> None:
        """Load `--restore-weights` (or the best weights just trained)."""
        c = self.config
        path = resolve_weights_path(c) if c.restore_weights else self.weights_path
        log(c, f"Loading weights: {path}")
        load_weights(self.model, path, c)

    # evaluation ------------------------------------------------------------------------------
    @names_unreadable_files
    def evaluate(self) -> dict:
        """Metrics on `--split` (default test, else val), table, JSON report and figures."""
        c = self.config
        split = c.split or ("test" if "test" in self.dataset.splits and
                            self.dataset.splits["test"] else "val")
        generator = self.generator(split, training=False)
        predictor = Predictor(self.model, tta=c.tta, tile=c.tile, scales=c.tta_scales,
                              fold_bn=c.fold_bn)
        worst = WorstImages(c.worst if c.plot or c.html else 0)
        start = time.time()
        metrics = self._score(predictor, generator.dataset(), worst)
        seconds = time.time() - start
        names = self.classes.names
        print(f"\n{split} split, {metrics['n_images']} images ({seconds:.1f} s):")
        print(format_table(metrics, names))
        out = Path(c.output_dir)
        report = Path(c.report) if c.report else out / f"report-{split}.json"
        write_report(report, metrics, names, {"split": split, "weights": str(c.restore_weights),
                                              "arch": c.arch, "tta": c.tta,
                                              "tta_scales": list(c.tta_scales)})
        visualize.save_confusion_matrix(out / f"confusion-{split}.png",
                                        np.array(metrics["confusion_matrix"]), names)
        print(f"Report: {report}; confusion matrix: {out / f'confusion-{split}.png'}")
        for rank, (miou, index, image, truth, prediction) in enumerate(
                worst.items if c.plot else []):
            stem = generator.samples[index].stem
            visualize.save_comparison(out / f"worst-{rank + 1:02d}-{stem}.png", image, truth,
                                      prediction, self.classes.colors, self.classes.ignore_index,
                                      f"{stem}: mIoU {miou:.3f}")
        if worst.items and c.plot:
            print(f"Overlays of the {len(worst.items)} worst images in {out}")
        if c.html:
            self._write_html(metrics, split, generator, worst)
        return metrics

    def _write_html(self, metrics, split, generator, worst) -> None:
        from fcn_keras.html_report import load_history, write_html_report
        c = self.config
        weights = resolve_weights_path(c) if c.restore_weights else self.weights_path
        items = [(miou, generator.samples[index].stem, image, truth, prediction)
                 for miou, index, image, truth, prediction in worst.items]
        page = write_html_report(c.html, metrics, self.classes,
                                 {"split": split, "weights": weights, "tta": c.tta}, items,
                                 load_history(weights))
        print(f"HTML report: {page}")

    # prediction ------------------------------------------------------------------------------
    def predict_files(self, target: str) -> list[Path]:
        """Segment one image or every image of a folder: `<stem>-mask.png`, `<stem>-overlay.png`,
        and with `--via-out` the same masks as polygons of a VIA project file."""
        from fcn_keras.api import image_files_and_root
        from fcn_keras.pipeline import read_rgb
        c = self.config
        files, root = image_files_and_root(target)
        segmenter = Segmenter(self.model, self.classes, tta=c.tta, tile=c.tile,
                              tta_scales=c.tta_scales, channels=c.channels, fold_bn=c.fold_bn)
        project = segmenter.via_project(root, attribute=c.attribute, tolerance=c.via_tolerance,
                                        min_area=c.via_min_area) if c.via_out else None
        out = Path(c.output_dir)
        written = []
        for path in files:
            image = read_rgb(path, c.channels)
            labels = segmenter.predict(image)
            mask_path = out / f"{path.stem}-mask.png"
            write_index_png(mask_path, labels, self.classes.palette())
            visualize.save_rgb(out / f"{path.stem}-overlay.png",
                               visualize.overlay(image, labels, self.classes.colors))
            written.append(mask_path)
            regions = f", {project.add(path, labels)} VIA region(s)" if project else ""
            log(c, f"{path}: {mask_path}{regions}")
        if project is not None:
            project.write(c.via_out)
            log(c, f"VIA project: {c.via_out} (image names relative to {root}; back to masks: "
                   f"python utils/generate_gt_segmentation.py -p {root} -j {c.via_out})")
        return written

    # export ----------------------------------------------------------------------------------
    def export(self, directory: str) -> None:
        from fcn_keras.export import export_model
        export_model(self.model, Path(directory), self.classes, self.config,
                     tflite_size=self.config.export_size)


def load_weights(model, path: Path, config: Config) -> None:
    """Load `.weights.h5`, `.keras` or the book's Keras 2 `.h5`; say what differs on failure."""
    if not path.exists():
        raise ConfigError(f"{path}: weights file not found")
    check_weights_file(path)
    core = next((layer for layer in model.layers if isinstance(layer, keras.Model)), None)
    errors = []
    for target in (model, core):
        if target is None:
            continue
        try:
            target.load_weights(str(path))
            return
        except Exception as exc:  # Keras raises ValueError/KeyError/OSError for mismatches
            errors.append(str(exc).strip().splitlines()[0][:300])
            if not str(path).endswith(".h5") or str(path).endswith(".weights.h5"):
                break
    raise ConfigError(
        f"{path}: does not fit this model (--arch {config.arch} --backbone {config.backbone} "
        f"--layers {config.layers} --n {config.n} --resnet-version {config.resnet_version}, "
        f"{model.output_shape[-1]} classes, {model.count_params():,} parameters): {errors[0]}")


def check_weights_file(path: Path) -> None:
    """Refuse a file that is not a readable weights file before Keras tries it, so the message
    says that rather than "does not fit this model" or an h5py traceback. Every array is read
    once: a file cut short or overwritten in the middle fails there, not halfway through
    loading (weights files are at most tens of MB)."""
    import zipfile

    import h5py
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a weights file")
    if path.suffix == ".keras":
        if not zipfile.is_zipfile(path):
            raise ConfigError(f"{path}: not a readable .keras file (not a zip archive; "
                              "truncated or another kind of file)")
        return
    try:
        with h5py.File(path, "r") as weights:
            weights.visititems(_read_dataset)
    except Exception as exc:   # h5py raises OSError, KeyError, RuntimeError, ValueError
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"{path}: not a readable Keras weights file (HDF5; truncated or "
                          f"damaged?): {reason[:300]}") from None


def _read_dataset(name, item) -> None:
    """`visititems` callback: read an array (returning None goes on to the next item)."""
    import h5py
    if isinstance(item, h5py.Dataset):
        item[()]
