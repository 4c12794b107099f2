"""The names the command line offers for architectures, context modules, backbones and losses.

They live here, apart from the modules that build them, so that parsing the command line (and
`python fcn.py --help`) does not import TensorFlow; `models`, `backbones` and `losses` import
them from here.
"""

from __future__ import annotations

from fcn_keras.errors import ConfigError

ARCHS = ("fcn", "fcn32s", "fcn8s", "fcn4s")
CONTEXTS = ("none", "aspp")
BACKBONES = ("resnet", "resnet50v2", "vgg16")
LOSSES = ("ce", "dice", "ce+dice", "lovasz", "ce+lovasz")


def check_context(arch: str, context: str) -> None:
    """The context module sits on the skip-fusion heads' stride-32 features only."""
    if context not in CONTEXTS:
        raise ConfigError(f"unknown --context {context!r}; choose one of {', '.join(CONTEXTS)}")
    if context != "none" and arch not in ("fcn8s", "fcn4s"):
        raise ConfigError(f"--context {context} applies to the skip-fusion heads (--arch fcn8s "
                          f"or fcn4s), not --arch {arch}")
