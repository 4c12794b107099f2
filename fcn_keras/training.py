"""The training verb of the facade (`fcn_keras.app.FCN.train`), in the manner of torchvision's
references/segmentation `train.py`: one short function per step (strategy, optimizer, resume,
the fit or multi-worker loop, the closing report) instead of one long method.

Every function takes the facade, `app`, for what a run shares: its `config`, `model`,
`strategy`, `classes`, `dataset`, `watchdog`, `save_dir` and `weights_path`. Training sets
`app.schedule` and `app.time_limit`, which the facade exposes.
"""

from __future__ import annotations

import shutil

import keras
import tensorflow as tf

from fcn_keras import distributed, fault_injection
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
from fcn_keras.errors import ConfigError, FCNError, OutputError
from fcn_keras.evaluate import score_split
from fcn_keras.losses import SegmentationLoss, class_pixel_counts, load_class_weights
from fcn_keras.predict import Predictor
from fcn_keras.recalibrate import describe, recalibrate_and_save, training_images
from fcn_keras.restore import load_weights
from fcn_keras.runlock import SaveDirLock
from fcn_keras.runtime import log
from fcn_keras.sidecar import beside, weights_stem, write_sidecars
from fcn_keras.strategy import choose_strategy, is_chief, strategy_name
from fcn_keras.watchdog import Watchdog


# set-up (the facade's constructor) ---------------------------------------------------------
def strategy_for(config):
    """(strategy, watchdog): the distribution strategy of `--strategy` when training (else the
    default one) and, in a multi-worker cluster, the watchdog of lost workers, started before
    the strategy, which waits for the whole cluster to connect."""
    watchdog = None
    if config.train and strategy_name(config.strategy) == "multiworker":
        watchdog = Watchdog(config.worker_timeout).start()
    strategy = choose_strategy(config.strategy) if config.train else \
        tf.distribute.get_strategy()
    return strategy, watchdog


def prepare_model(model, config) -> None:
    """`--sync-bn` (batch statistics over all replicas) and, for training, `--remat`."""
    if config.sync_bn:
        distributed.synchronize_batch_norm(model)
    if config.remat and config.train:
        from fcn_keras.remat import enable_remat
        enable_remat(model)


# the verb ----------------------------------------------------------------------------------
def train(app) -> None:
    """Train on `train`, validating `val` after every epoch: `model.fit` under the chosen
    strategy, or under MultiWorkerMirroredStrategy (where Keras 3's fit fails) the custom
    loop of `fcn_keras.distributed`, which shares everything with fit but the step.
    The `--save-dir` is locked meanwhile (`fcn_keras.runlock`): one run per folder."""
    train_gen, val_gen = training_generators(app)
    try:
        with SaveDirLock(app.save_dir, enabled=is_chief()):
            _train(app, train_gen, val_gen)
    finally:
        if app.watchdog is not None:
            app.watchdog.stop()


def _train(app, train_gen, val_gen) -> None:
    c = app.config
    optimizer = compile_model(app)
    history, state, initial_epoch = resume(app, optimizer)
    multiworker = distributed.is_multiworker(app.strategy)
    accuracy = accuracy_callback(app, val_gen, history, state, multiworker)
    if initial_epoch:   # a damaged history (moved aside) must not lower the best so far
        accuracy.best = max(accuracy.best, float(state.best.numpy()))
    if multiworker:  # before any early return: the workers' collectives must match
        initial_epoch = _prepare_workers(app, train_gen, accuracy, initial_epoch)
    if initial_epoch >= c.epochs:
        log(c, f"Nothing to do: the run already completed {initial_epoch} epochs")
        return
    nan_guard = NanGuard()
    app.schedule = make_schedule(c.schedule, c.lr, c.epochs, c.warmup_epochs)
    app.time_limit = TimeLimit(c.time_limit, schedule=app.schedule) if c.time_limit else None
    loop = fit_multiworker if multiworker else fit
    _guarded(app, state, lambda guard: loop(app, train_gen, initial_epoch,
                                            [nan_guard, accuracy, guard]))
    fault_injection.dump_weights(app.model)
    _report(app, nan_guard, accuracy)
    if c.recalibrate_bn:
        recalibrate_best(app, val_gen)


def _guarded(app, state, run) -> None:
    """`run(guard)` with Ctrl-C turned into a stop at a step boundary (`InterruptGuard`); an
    interrupt or a full disk says what is kept and how to continue. The sidecars are written
    first, so that the weights of the first epoch already have their classes and settings."""
    with InterruptGuard() as guard:
        try:
            if is_chief():
                write_sidecars(app.weights_path, app.config, app.classes)
            run(guard)
        except KeyboardInterrupt:
            where = f"saved in {app.save_dir}" if is_chief() else "saved by the chief"
            raise TrainingInterrupted(
                f"training interrupted; {int(state.epoch.numpy())} epoch(s) complete, state "
                f"{where}: continue with --resume") from None
        except OutputError as exc:   # a full disk: the last completed epoch is on disk
            raise OutputError(
                f"training stopped: {exc}. The files of the {int(state.epoch.numpy())} "
                f"completed epoch(s) are kept in {app.save_dir}: make room, then continue "
                "with --resume") from None


def _report(app, nan_guard, accuracy) -> None:
    """How the run ended: a NaN loss is an error; a time limit and the best score are said."""
    c = app.config
    if nan_guard.stopped_at is not None:
        raise FCNError(f"training stopped: the loss became NaN/inf; the best weights so far "
                       f"are kept in {app.weights_path} (try a lower --lr)")
    if app.time_limit is not None and app.time_limit.stopped_after is not None:
        log(c, f"--time-limit {c.time_limit:g} min: stopped after "
               f"{app.time_limit.stopped_after} epoch(s) of this run (the next would have "
               "ended past the limit); continue with --resume")
    if is_chief():
        log(c, f"Best val mIoU {accuracy.best:.4f}; weights: {app.weights_path}")


# data --------------------------------------------------------------------------------------
def training_generators(app):
    """The `train` and `val` generators; the global batch must split evenly over replicas."""
    c = app.config
    replicas = app.strategy.num_replicas_in_sync
    if c.batch_size % replicas:
        raise ConfigError(f"--batch-size {c.batch_size} must be a multiple of the "
                          f"{replicas} replicas")
    train_gen = app.generator("train", training=True)
    val_gen = app.generator("val", training=False)
    log(c, f"# of classes {app.classes.n_classes}; train {len(train_gen.samples)} images, "
           f"val {len(val_gen.samples)}")
    log(c, f"Batch size: {c.batch_size} global = {c.batch_size // replicas} per replica x "
           f"{replicas} replica(s) ({type(app.strategy).__name__})")
    return train_gen, val_gen


# optimizer and loss ------------------------------------------------------------------------
def build_optimizer(config):
    """`--optimizer` at `--lr`: SGD with the book's momentum 0.9, AdamW, or Adam; with `--ema`
    it also keeps the moving average of the weights (`fcn_keras.ema`)."""
    c = config
    ema = {"use_ema": c.ema > 0, "ema_momentum": c.ema or 0.99}
    if c.optimizer == "sgd":
        return keras.optimizers.SGD(c.lr, momentum=0.9, weight_decay=c.weight_decay or None,
                                    **ema)
    if c.optimizer == "adamw":
        return keras.optimizers.AdamW(c.lr, weight_decay=c.weight_decay or 1e-4, **ema)
    return keras.optimizers.Adam(c.lr, weight_decay=c.weight_decay or None, **ema)


def class_weights(app):
    """`--class-weights`; pixel counts of `train` are read only for the kinds that need them."""
    n_classes = app.classes.n_classes
    return load_class_weights(app.config.class_weights, n_classes,
                              lambda: class_pixel_counts(app.dataset.split("train"), n_classes))


def compile_model(app):
    """Compile the model with its optimizer and loss under the strategy; the optimizer."""
    c = app.config
    with app.strategy.scope():
        optimizer = build_optimizer(c)
        loss = SegmentationLoss(app.classes.n_classes, c.loss, class_weights(app))
        app.model.compile(optimizer=optimizer, loss=loss, jit_compile=bool(c.jit))
        optimizer.build(app.model.trainable_variables)
    return optimizer


# resume ------------------------------------------------------------------------------------
def resume(app, optimizer):
    """(history, state, initial epoch): the run's history and resumable state beside its
    weights; with `--resume`, restored from the last completed epoch."""
    c = app.config
    history = History(app.save_dir, weights_stem(app.weights_path))
    state = TrainingState(beside(app.weights_path, "-state"), app.model, optimizer,
                          scratch=not is_chief(), fresh=not c.resume)
    if not c.resume:
        if c.init_weights and c.init_weights.lower() != "none":
            init_weights(app)
        return history, state, 0
    if is_chief():
        remove_stale_temporaries(app.save_dir, weights_stem(app.weights_path), state.directory)
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


def init_weights(app) -> None:
    """`--init-weights`: a fresh training starts from another model's matching layers."""
    from fcn_keras.backbones import weights_file
    from fcn_keras.restore import load_matching_weights
    path = weights_file(app.config.init_weights, "--init-weights")
    check_same_model(app.config, path)
    fresh = load_matching_weights(app.model, path)
    log(app.config, f"--init-weights {path}: loaded every layer but {len(fresh)} "
                    f"({', '.join(fresh)})")


def check_same_model(config, path) -> None:
    """Keras loads a weights file layer by layer in the model's order, not by name, so a file of
    another architecture could fill layers that merely have the same shapes: when the file's
    `.model.json` is there, every model setting it names must be this training's."""
    from fcn_keras.sidecar import contradicted, read_settings, settings_path
    saved = read_settings(path) or {}
    conflict = contradicted(config, saved, saved)
    if conflict:
        flag, value, given = conflict
        raise ConfigError(f"--init-weights {path}: its model has {flag} {value} "
                          f"({settings_path(path).name}), this training {flag} {given}; the "
                          "models must agree but for the classes (or use --init-weights none)")


def remove_stale_temporaries(save_dir, stem: str, state_dir) -> None:
    """Temporaries of writes cut short by a crash (ours and TensorFlow's checkpoint's)."""
    for stale in [*save_dir.glob(f".{stem}*"), *state_dir.glob("*_temp"),
                  *state_dir.glob("checkpoint.tmp*")]:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)


# validation --------------------------------------------------------------------------------
def recalibrate_best(app, val_gen) -> None:
    """`--recalibrate-bn`: the best weights' batch-norm statistics recomputed over the
    training split's whole images (`fcn_keras.recalibrate`), written in their place
    (atomically) if val mIoU does not fall; the record goes beside them. Single process only:
    in a cluster each worker would have to run it in step."""
    c = app.config
    if distributed.is_multiworker(app.strategy):
        log(c, "--recalibrate-bn: skipped under multi-worker training; run "
               "utils/recalibrate_bn.py on the best weights")
        return
    if not is_chief() or not app.weights_path.exists():
        return
    load_weights(app.model, app.weights_path, c)
    record = recalibrate_and_save(app.model, app.weights_path, training_images(app.dataset),
                                  val_gen.dataset(), app.classes, c.batch_size, c.channels,
                                  show_progress=c.verbose > 0)
    log(c, describe(record))


def accuracy_callback(app, val_gen, history, state, multiworker: bool) -> AccuracyCallback:
    """The book's callback scoring `val`; in a cluster the chief's score is shared, and its
    validation is local work for the watchdog (the others wait for it)."""
    predictor = Predictor(app.model)
    val_ds = val_gen.dataset()

    def score():
        return score_split(predictor, val_ds, app.classes.n_classes, app.classes.ignore_index)

    def evaluate():
        if app.watchdog is None:
            return score()
        with app.watchdog.local():
            return score()

    share = (lambda value: distributed.share_scalar(app.strategy, value)) \
        if multiworker else None
    return AccuracyCallback(evaluate, app.weights_path, history, app.config.verbose,
                            state, chief=is_chief(), share=share)


# the loops ---------------------------------------------------------------------------------
def fit(app, train_gen, initial_epoch: int, callbacks: list) -> None:
    """`model.fit`; `callbacks` = NanGuard, AccuracyCallback, InterruptGuard (last)."""
    c = app.config
    *callbacks, guard = callbacks
    pace = PaceReport(c.epochs, lambda text: log(c, text), time_limit=c.time_limit)
    callbacks = [keras.callbacks.LearningRateScheduler(app.schedule), *callbacks, pace,
                 *fault_injection.batch_callbacks(), guard]
    if app.time_limit is not None:
        callbacks.append(app.time_limit)
    if c.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(app.save_dir / "tensorboard")))
    app.model.fit(train_gen.dataset(repeat=True), epochs=c.epochs,
                  steps_per_epoch=c.steps_per_epoch or len(train_gen),
                  initial_epoch=initial_epoch, callbacks=callbacks, shuffle=False,
                  verbose=1 if c.verbose == 1 else (2 if c.verbose > 1 else 0))


def _prepare_workers(app, train_gen, accuracy, initial_epoch: int) -> int:
    """Multi-worker: agree on the state and the epoch to start from (`fcn_keras.distributed`)."""
    with distributed.lost_worker_errors():
        initial_epoch = distributed.prepare_workers(app.strategy, app.model, train_gen,
                                                    accuracy, initial_epoch)
    if app.watchdog is not None:
        app.watchdog.beat()
    return initial_epoch


def fit_multiworker(app, train_gen, initial_epoch: int, callbacks: list) -> None:
    """The custom loop of `fcn_keras.distributed`, with the same callbacks as `fit`."""
    c = app.config
    if c.tensorboard or c.jit or c.time_limit:
        log(c, "Note: --tensorboard, --jit and --time-limit are not applied to the "
               "multi-worker loop")
    nan_guard, accuracy, guard = callbacks
    loop = distributed.MultiWorkerLoop(app.strategy, app.model, app.schedule, accuracy,
                                       nan_guard, guard, c.verbose, app.watchdog)
    with distributed.lost_worker_errors():
        loop.run(train_gen.dataset(repeat=True), c.epochs,
                 c.steps_per_epoch or len(train_gen), initial_epoch)
