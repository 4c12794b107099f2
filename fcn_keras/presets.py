"""Presets: named sets of command-line options (JSON), so a recipe is one short command.

A preset is a JSON object `{"description": ..., "options": {flag: value}}` whose option names
are the long flags without dashes (`"batch-size": 8` or `"batch_size": 8`). Shipped presets live
in `fcn_keras/presets/NAME.json`; `--preset FILE.json` takes your own. Flags given on the
command line win over the preset, which wins over the built-in defaults, so
`--preset camvid --epochs 10` is the recipe made shorter.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fcn_keras.errors import ConfigError

PRESET_DIR = Path(__file__).with_name("presets")


def available() -> list[str]:
    """Names of the shipped presets."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.json"))


def preset_path(name: str) -> Path:
    """A shipped preset's file, or `name` itself when it is a path to a JSON file."""
    shipped = PRESET_DIR / f"{name}.json"
    if shipped.is_file():
        return shipped
    path = Path(name)
    if path.suffix == ".json" or path.exists():
        if not path.is_file():
            raise ConfigError(f"--preset {name}: file not found")
        return path
    raise ConfigError(f"--preset {name}: no such preset (shipped: {', '.join(available())}; "
                      "or give a path to a JSON file)")


def load_preset(name: str, parser: argparse.ArgumentParser) -> dict:
    """The preset's options as `{dest: value}`, each parsed and checked as its flag would be."""
    path = preset_path(name)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"--preset {path}: not a readable JSON file ({exc})") from None
    options = data.get("options") if isinstance(data, dict) else None
    if not isinstance(options, dict):
        raise ConfigError(f"--preset {path}: expected a JSON object with an \"options\" object")
    actions = {a.dest: a for a in parser._actions if a.dest not in ("help", "preset")}
    values = {}
    for key, value in options.items():
        dest = key.lstrip("-").replace("-", "_")
        action = actions.get(dest)
        if action is None:
            raise ConfigError(f"--preset {path}: unknown option {key!r}")
        values[dest] = _convert(path, key, action, value)
    return values


def _convert(path: Path, key: str, action: argparse.Action, value):
    """Run a JSON value through the flag's own type and choices, so errors read the same."""
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction,
                           argparse.BooleanOptionalAction)):
        if not isinstance(value, bool):
            raise ConfigError(f"--preset {path}: {key!r} must be true or false, got {value!r}")
        return value
    if value is None:
        return None
    if isinstance(value, list):
        value = ",".join(str(v) for v in value)
    try:
        converted = action.type(str(value)) if action.type else value
    except (argparse.ArgumentTypeError, TypeError, ValueError) as exc:
        raise ConfigError(f"--preset {path}: {key!r}: {exc or 'bad value'} (got {value!r})") \
            from None
    if action.choices is not None and converted not in action.choices:
        raise ConfigError(f"--preset {path}: {key!r} must be one of "
                          f"{', '.join(map(str, action.choices))}, got {value!r}")
    return converted
