"""Process-wide TensorFlow/Keras settings chosen from the config: seeds, precision, threads."""

from __future__ import annotations

import os


def configure_runtime(config) -> None:
    """Apply `--seed` and `--mixed-precision` before any model is built."""
    import keras

    if config.seed is not None:
        os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
        keras.utils.set_random_seed(config.seed)
    if config.mixed_precision:
        keras.mixed_precision.set_global_policy(mixed_precision_policy())


def mixed_precision_policy() -> str:
    """bfloat16 on CPUs (AVX512-BF16 / AMX run it natively), float16 on GPUs."""
    import tensorflow as tf

    return "mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16"
