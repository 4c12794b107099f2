"""Loading a weights file into a model (`--restore-weights`, the API's `from_weights`).

Kept apart from training and export because every entry point loads weights, and a bad file
should fail the same way everywhere: with a message that names the file and what is wrong with
it (not a file of weights, damaged, or weights of another model) instead of an h5py traceback.
"""

from __future__ import annotations

from pathlib import Path

from fcn_keras.errors import ConfigError


def load_weights(model, path: Path, config) -> None:
    """Load `.weights.h5`, `.keras` or the book's Keras 2 `.h5`; say what differs on failure."""
    if not path.exists():
        raise ConfigError(f"{path}: weights file not found")
    check_weights_file(path)
    errors = []
    for target in _load_targets(model):
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


def _load_targets(model) -> list:
    """The model, then (for the book's Keras 2 `.h5`) its inner core model if it has one."""
    import keras
    core = next((layer for layer in model.layers if isinstance(layer, keras.Model)), None)
    return [target for target in (model, core) if target is not None]


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


def load_matching_weights(model, path: Path) -> list[str]:
    """`--init-weights`: start a training from another model's weights file (the shipped CamVid
    model for a user's own photos, say): Keras matches the file's layers to the model's in
    order, and every layer whose weight shapes agree is loaded; the others keep their fresh
    initial weights. Between models of the same settings those are the layers whose shapes
    follow the number of classes (the scores and their upsampling); `training.init_weights`
    checks the settings first. Returns the names of the layers left fresh; refuses a file that
    fits no layer at all."""
    import warnings

    import numpy as np

    check_weights_file(path)
    layers = list(_weighted_layers(model))
    before = [[np.array(w) for w in layer.get_weights()] for layer in layers]
    for layer in layers:   # NaN marks what the file does not overwrite
        for variable in layer.weights:
            if np.issubdtype(np.dtype(variable.dtype), np.floating):
                variable.assign(np.full(variable.shape, np.nan, np.dtype(variable.dtype)))
    with warnings.catch_warnings():   # Keras warns once per layer skipped
        warnings.simplefilter("ignore")
        try:
            model.load_weights(str(path), skip_mismatch=True)
        except Exception as exc:   # not a weights file Keras can read
            for layer, old in zip(layers, before):
                layer.set_weights(old)
            raise ConfigError(f"--init-weights {path}: cannot be loaded "
                              f"({str(exc).strip().splitlines()[0][:300]})") from None
    fresh = []
    for layer, old in zip(layers, before):
        if any(np.isnan(np.asarray(w, np.float64)).all() for w in layer.get_weights()
               if np.issubdtype(np.asarray(w).dtype, np.floating)):
            layer.set_weights(old)   # not in the file: its own initial weights again
            fresh.append(layer.name)
    if len(fresh) == len(layers):
        raise ConfigError(f"--init-weights {path}: no layer of this model matches the file "
                          "(another --arch, --backbone or --n?); --init-weights none starts "
                          "from scratch")
    return fresh


def _weighted_layers(model):
    """Every layer with weights, inside nested models too."""
    import keras
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _weighted_layers(layer)
        elif layer.weights:
            yield layer
