"""Model files for use outside training: `--export DIR` (a SavedModel and a `.keras` file, ONNX
when tf2onnx is installed, plus `classes.json`, so it can be served without this package) and
weights files without the optimizer's state."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np

from fcn_keras.errors import ConfigError

OPTIMIZER_GROUP = "optimizer"   # where Keras 3 puts a compiled model's optimizer in .weights.h5


def save_weights_only(model, path: str | Path) -> None:
    """`model.save_weights(path)` without the optimizer's slots.

    Keras 3 writes a compiled model's optimizer state into `.weights.h5` too (Adam's two slots
    triple the file); nothing reads it back here (`--resume` has its own checkpoint) and the
    file is for inference or fine-tuning, so the best-weights file keeps only the model's
    groups. Writes `path` directly: callers wrap it in `atomic_path`.

    The file carries checksums (HDF5's newest format checksums its metadata; every array gets a
    Fletcher-32 checksum), so a file damaged on disk fails to load with a message naming it
    instead of loading different weights. Keras and h5py read it as any weights file.

    A full disk is found before HDF5 writes anything (`ensure_free_space`): HDF5 failing
    halfway leaves Keras' file open, and h5py then prints a traceback for each of its failed
    flushes when the objects are collected. The copy without the optimizer is built in memory
    and written with one plain write, whose failure is one `OSError`.
    """
    import h5py

    from fcn_keras.io_utils import ensure_free_space

    scratch_root = Path(tempfile.gettempdir())
    ensure_free_space(scratch_root, _state_bytes(model), "the weights' scratch copy")
    ensure_free_space(Path(path).parent, _state_bytes(model, optimizer=False), Path(path).name)
    buffer = io.BytesIO()
    with tempfile.TemporaryDirectory(prefix="fcn-weights-", dir=scratch_root) as scratch:
        full = Path(scratch) / "full.weights.h5"
        model.save_weights(str(full))
        with h5py.File(full, "r") as source, \
                h5py.File(buffer, "w", libver="latest") as target:
            _copy_checksummed(source, target, skip=OPTIMIZER_GROUP)
    Path(path).write_bytes(buffer.getvalue())


def _copy_checksummed(source, target, skip: str | None = None) -> None:
    """Copy an HDF5 group's attributes, groups and arrays; arrays with a Fletcher-32 checksum
    (scalars and empty arrays cannot be chunked, so they are copied as they are)."""
    import h5py

    for key, value in source.attrs.items():
        target.attrs[key] = value
    for name, item in source.items():
        if name == skip:
            continue
        if isinstance(item, h5py.Group):
            _copy_checksummed(item, target.create_group(name))
        elif item.shape and item.size:
            copy = target.create_dataset(name, data=item[()], chunks=True, fletcher32=True)
            for key, value in item.attrs.items():
                copy.attrs[key] = value
        else:
            source.copy(item, target, name=name)


def _state_bytes(model, optimizer: bool = True) -> int:
    """The bytes of the model's variables (and its optimizer's): what a weights file holds."""
    variables = list(model.weights)
    if optimizer and getattr(model, "optimizer", None) is not None:
        variables += list(model.optimizer.variables)
    return sum(int(np.prod(v.shape)) * np.dtype(v.dtype).itemsize for v in variables)


def compact_weights(source: str | Path, target: str | Path) -> None:
    """Copy a `.weights.h5` file with its float32 arrays stored as float16: half the size.

    Keras casts them back when it loads them into the model's float32 variables, so nothing
    else changes; the rounding (11 significant bits) moves output probabilities by about 1e-3
    (tests/test_export_compact.py). For shipping weights in the repository; training keeps
    writing float32. Writes `target` atomically.
    """
    import h5py
    import numpy as np

    from fcn_keras.io_utils import atomic_path

    def copy(src, dst):
        for key, value in src.attrs.items():
            dst.attrs[key] = value
        for name, item in src.items():
            if isinstance(item, h5py.Group):
                copy(item, dst.create_group(name))
            else:
                data = item[()]
                dst.create_dataset(name, data=data.astype(np.float16)
                                   if data.dtype == np.float32 else data)

    with atomic_path(Path(target)) as scratch:
        with h5py.File(source, "r") as src, h5py.File(scratch, "w") as dst:
            copy(src, dst)


def export_backbone(model, target: str | Path) -> Path:
    """Write the backbone of `model` (the book's ResNet with its features pyramid) as a
    `--backbone-weights` file, float16-compacted: a trained model's backbone to start another
    dataset's training from, since on a 2-core CPU a network trained from scratch is short of
    epochs (issue 11). Only a backbone built with the same `--n`, `--layers`,
    `--pyramid-filters` and `--pyramid-blocks` loads it. Written atomically; returns `target`.
    """
    from fcn_keras.remat import _backbones

    backbones = _backbones(model)
    if len(backbones) != 1:
        raise ConfigError(f"model {model.name} has {len(backbones)} backbones; expected one")
    target = Path(target)
    with tempfile.TemporaryDirectory(prefix="fcn-backbone-") as scratch:
        full = Path(scratch) / "backbone.weights.h5"
        backbones[0].save_weights(str(full))
        compact_weights(full, target)
    return target


def float32_model(model):
    """`model` itself when it computes in float32, else a float32 clone with its weights.

    A model built under mixed precision (bfloat16, chosen by default on CPUs that compute it
    natively) cannot be converted to TFLite or ONNX, and a deployed file should not depend on
    the training machine's precision: exports are always float32 graphs."""
    import keras

    if all(layer.dtype_policy.compute_dtype == "float32" for layer in _computing_layers(model)):
        return model

    def as_float32(layer):
        return layer.__class__.from_config({**layer.get_config(), "dtype": "float32"})

    clone = keras.models.clone_model(model, clone_function=as_float32, recursive=True)
    clone.set_weights(model.get_weights())
    return clone


def _computing_layers(model):
    """The layers that compute: not the functional containers and their inputs, whose dtype
    policy only says what they were built under."""
    import keras
    return [layer for layer in model._flatten_layers(include_self=False)
            if not isinstance(layer, (keras.Model, keras.layers.InputLayer))]


def export_model(model, directory: Path, classes, config, tflite_size=None) -> list[Path]:
    """Write `model.keras`, `saved_model/` (any input size), `model.tflite` (float32) and
    `model-int8.tflite` (dynamic-range int8 weights), both for one input size (`tflite_size`,
    default the config's --height x --width), with tf2onnx installed `model.onnx` (the same one
    size), and `classes.json`; all float32 graphs (`float32_model`). Each maps an (N, H, W, C)
    float32 [0, 1] batch to per-pixel class probabilities; `load_export` reads any of them back
    (tests/test_export.py checks that their masks agree with the Keras model's)."""
    model = float32_model(model)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    keras_path = directory / "model.keras"
    model.save(keras_path)
    written.append(keras_path)
    saved_model = directory / "saved_model"
    try:
        model.export(str(saved_model), format="tf_saved_model", verbose=False)
        written.append(saved_model)
    except Exception as exc:  # export needs the TF backend
        raise ConfigError(f"could not export a SavedModel to {saved_model}: {exc}") from None
    size = tuple(tflite_size or (config.height, config.width))
    for name, int8 in (("model.tflite", False), ("model-int8.tflite", True)):
        written.append(export_tflite(model, directory / name, size, config.channels, int8))
    classes.save(directory / "classes.json")
    written.append(directory / "classes.json")
    try:
        import tf2onnx  # noqa: F401
    except ImportError:
        print("ONNX not written: pip install tf2onnx to get model.onnx.")
    else:
        import tensorflow as tf
        # One size, as for TFLite: with free height and width tf2onnx mis-converts the shape
        # arithmetic of the pad-to-stride and crop-back layers (240 rows came back as 192).
        spec = (tf.TensorSpec((None, *size, config.channels), tf.float32, name="image"),)
        import tf2onnx as converter
        converter.convert.from_keras(model, input_signature=spec,
                                     output_path=str(directory / "model.onnx"))
        written.append(directory / "model.onnx")
    for path in written:
        print(f"Exported {path}")
    return written


def export_tflite(model, path: Path, size: tuple[int, int], channels: int = 3,
                  int8: bool = False) -> Path:
    """Convert the model to TFLite for (1, height, width, channels) inputs.

    TFLite's built-in convolution needs static shapes (with free height and width the converter
    refuses tf.Conv2D unless the TensorFlow ops are bundled), so the file takes one size, as
    mobile deployments do. `int8`: dynamic-range quantisation, weights stored as int8 (a quarter
    of the size), activations computed in float."""
    import tensorflow as tf

    from fcn_keras.io_utils import atomic_path

    spec = tf.TensorSpec((1, *size, channels), tf.float32, name="image")
    with tempfile.TemporaryDirectory(prefix="fcn-tflite-") as scratch:
        model.export(scratch, format="tf_saved_model", input_signature=[spec], verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(scratch)
        if int8:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        try:
            flatbuffer = converter.convert()
        except Exception as exc:  # the converter raises ConverterError and others
            raise ConfigError(f"could not convert the model to TFLite: "
                              f"{str(exc).splitlines()[0][:300]}") from None
    with atomic_path(path) as scratch:
        Path(scratch).write_bytes(flatbuffer)
    return path


def check_size(path: Path, shape: tuple, images) -> None:
    """Fixed-size exports (TFLite, ONNX) name their size when given another."""
    from fcn_keras.errors import DataError
    if tuple(images.shape[1:]) != tuple(shape):
        raise DataError(f"{path}: takes {shape[0]}x{shape[1]} images ({shape[2]} channels), "
                        f"got {images.shape[1]}x{images.shape[2]}; export again with "
                        "--export-size HxW")


class TFLiteModel:
    """A `.tflite` file called like a Keras model: (N, H, W, C) float32 -> probabilities, one
    image at a time, at the size the file was exported for."""

    def __init__(self, path: Path):
        self.path = path
        self.interpreter = tflite_interpreter(path)
        self.interpreter.allocate_tensors()
        details = self.interpreter.get_input_details()[0]
        self.input, self.shape = details["index"], tuple(details["shape"][1:])
        self.output = self.interpreter.get_output_details()[0]["index"]

    def __call__(self, images):
        import numpy as np
        images = np.ascontiguousarray(images, np.float32)
        check_size(self.path, self.shape, images)
        outputs = []
        for image in images:
            self.interpreter.set_tensor(self.input, image[None])
            self.interpreter.invoke()
            outputs.append(self.interpreter.get_tensor(self.output)[0])
        return np.stack(outputs)


def tflite_interpreter(path: Path):
    """LiteRT's interpreter (TFLite's successor) when installed, else TensorFlow's own, whose
    deprecation notice is not the user's concern here."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import warnings

        import tensorflow as tf
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return tf.lite.Interpreter(model_path=str(path))
    return Interpreter(model_path=str(path))


class SavedModelFunction:
    """A SavedModel's serving function called like a Keras model."""

    def __init__(self, path: Path):
        import tensorflow as tf
        self.loaded = tf.saved_model.load(str(path))   # keeps the function's variables alive
        self.function = self.loaded.serve

    def __call__(self, images):
        import tensorflow as tf
        return self.function(tf.constant(images, tf.float32)).numpy()


def load_export(path: Path):
    """A callable (N, H, W, C) float32 -> probabilities for any exported file or folder."""
    path = Path(path)
    if path.suffix == ".tflite":
        return TFLiteModel(path)
    if path.suffix == ".keras":
        import keras

        import fcn_keras.layers  # noqa: F401  (registers the custom layers)
        model = keras.saving.load_model(path, compile=False)
        return lambda images: model(images, training=False).numpy()
    if path.suffix == ".onnx":
        import onnxruntime
        session = onnxruntime.InferenceSession(str(path))
        first = session.get_inputs()[0]

        def run(images):
            check_size(path, tuple(first.shape[1:]), images)
            return session.run(None, {first.name: images.astype("float32")})[0]
        return run
    return SavedModelFunction(path)
