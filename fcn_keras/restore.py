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
