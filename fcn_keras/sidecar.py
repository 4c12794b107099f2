"""The files that sit beside a weights file, and the settings that rebuild its model.

Training writes `<stem>.model.json` beside `<stem>.weights.h5`: the model options (architecture,
backbone and its shape) and what the network was trained on (crop, input normalisation), so
that `--evaluate --restore-weights FILE` needs no model flags. A model flag given on the command
line (or by a preset) that contradicts the file is an error naming both values, since a wrong
guess would either fail to load or, worse, load into a different model. Weights without the
file keep the flags' values, as before.

Every companion of a weights file (`.classes.json`, `.model.json`, `-history.json/.csv`, the
`-state` folder of `--resume`) is named by `beside`, from the weights file's stem, so that
training, evaluation, the HTML report and the API agree on the names.
"""

from __future__ import annotations

import json
from pathlib import Path

from fcn_keras.errors import ConfigError
from fcn_keras.io_utils import atomic_write_text

# The Config fields that shape the network (bn_momentum and fast_layers do not change weights).
MODEL_FIELDS = ("arch", "backbone", "layers", "resnet_version", "n", "head_filters",
                "pyramid_filters", "pyramid_blocks", "context", "channels", "downsample")
FORMAT = "fcn-keras-model/1"


WEIGHTS_SUFFIXES = (".weights.h5", ".keras", ".h5")


def weights_stem(weights: Path) -> str:
    """`x-best-iou.weights.h5` -> `x-best-iou`: the name without its weights suffix, dots in
    the stem kept (`--dataset camvid.v2`), so every file of a run shares one stem."""
    name = Path(weights).name
    suffix = next((s for s in WEIGHTS_SUFFIXES if name.endswith(s) and name != s), None)
    return name[:-len(suffix)] if suffix else Path(name).stem


def beside(weights: Path, suffix: str) -> Path:
    """`runs/x-best-iou.weights.h5` -> `runs/x-best-iou<suffix>` (e.g. `.classes.json`,
    `-history.json`, `-state`): the one place the names of a weights file's companions are
    made."""
    weights = Path(weights)
    return weights.with_name(weights_stem(weights) + suffix)


def settings_path(weights: Path) -> Path:
    return beside(weights, ".model.json")


def write_sidecars(weights: Path, config, classes) -> None:
    """The classes and the model settings beside `weights`, so that evaluation and prediction
    need neither the dataset's classes nor the model flags."""
    classes.save(beside(weights, ".classes.json"))
    write_settings(weights, config, classes.n_classes)


def write_settings(weights: Path, config, n_classes: int) -> Path:
    """Write the model settings of `config` beside `weights` (atomically)."""
    path = settings_path(weights)
    document = {"format": FORMAT,
                "model": {name: getattr(config, name) for name in MODEL_FIELDS},
                "n_classes": int(n_classes),
                "training": {"height": config.height, "width": config.width,
                             "scale_range": list(config.scale_range),
                             "input": "RGB float32 in [0, 1] (pixel / 255)"}}
    atomic_write_text(path, json.dumps(document, indent=2) + "\n")
    return path


def read_settings(weights: Path) -> dict | None:
    """The model options saved beside `weights`, or None when there is no such file."""
    path = settings_path(weights)
    if not path.is_file():
        return None
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        model = document["model"]
        if not isinstance(model, dict) or set(model) - set(MODEL_FIELDS):
            raise ValueError(f"unexpected model settings {sorted(model)}")
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"{path}: not a readable model settings file ({exc}); delete it to "
                          "use the command-line model flags") from None
    return model


def apply_settings(config, given: set[str]):
    """`config` with the model options saved beside its `--restore-weights` file.

    `given`: the Config fields set on the command line or by a preset; those must agree with
    the file. Training is left alone: it builds the model the flags describe."""
    if config.train or not config.restore_weights:
        return config
    from fcn_keras.config import resolve_weights_path
    weights = resolve_weights_path(config)
    saved = read_settings(weights)
    if saved is None:
        return config
    conflict = contradicted(config, saved, [name for name in saved if name in given])
    if conflict:
        flag, value, given_value = conflict
        raise ConfigError(
            f"{settings_path(weights)}: the weights were trained with "
            f"{flag} {value}, but {flag} {given_value} was given; drop the flag "
            "(the saved settings rebuild the model) or give the weights of that model")
    return config.replace(**saved)


def contradicted(config, saved: dict, names) -> tuple[str, object, object] | None:
    """(flag, saved value, `config`'s value) of the first setting of `names` whose saved value
    `config` contradicts; None when they agree."""
    for name in names:
        if getattr(config, name) != saved[name]:
            return "--" + name.replace("_", "-"), saved[name], getattr(config, name)
    return None
