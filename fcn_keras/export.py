"""`--export DIR`: the trained model as a SavedModel and a `.keras` file (ONNX when tf2onnx is
installed), plus `classes.json`, so it can be served without this package."""

from __future__ import annotations

from pathlib import Path

from fcn_keras.errors import ConfigError


def export_model(model, directory: Path, classes, config) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    keras_path = directory / "model.keras"
    model.save(keras_path)
    written.append(keras_path)
    saved_model = directory / "saved_model"
    try:
        model.export(str(saved_model), format="tf_saved_model")
        written.append(saved_model)
    except Exception as exc:  # export needs the TF backend
        raise ConfigError(f"could not export a SavedModel to {saved_model}: {exc}") from None
    classes.save(directory / "classes.json")
    written.append(directory / "classes.json")
    try:
        import tf2onnx  # noqa: F401
    except ImportError:
        print("ONNX not written: pip install tf2onnx to get model.onnx. (TFLite: convert "
              f"{saved_model} with tf.lite.TFLiteConverter.from_saved_model.)")
    else:
        import tensorflow as tf
        spec = (tf.TensorSpec((None, None, None, config.channels), tf.float32, name="image"),)
        import tf2onnx as converter
        converter.convert.from_keras(model, input_signature=spec,
                                     output_path=str(directory / "model.onnx"))
        written.append(directory / "model.onnx")
    for path in written:
        print(f"Exported {path}")
    return written
