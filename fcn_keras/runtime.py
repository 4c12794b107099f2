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


def configure_threads(intra_op: int = 0, inter_op: int = 0) -> None:
    """TensorFlow's thread pools: `intra_op` threads inside one op (oneDNN's convolutions and
    GEMMs), `inter_op` ops run side by side; 0 keeps TensorFlow's choice (both = cores)."""
    import tensorflow as tf

    if intra_op:
        tf.config.threading.set_intra_op_parallelism_threads(intra_op)
    if inter_op:
        tf.config.threading.set_inter_op_parallelism_threads(inter_op)
