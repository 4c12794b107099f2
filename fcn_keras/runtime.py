"""Process-wide settings chosen from the config: seeds, precision, threads, and how much the
run says (`log`, shared by the facade's verb modules so `--verbose` means one thing)."""

from __future__ import annotations

import os
import warnings


def configure_runtime(config) -> None:
    """Apply `--seed` and `--mixed-precision` (explicit or auto) before any model is built."""
    import keras

    if config.seed is not None:
        os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
        keras.utils.set_random_seed(config.seed)
    mixed = use_mixed_precision(config.mixed_precision)
    if mixed and config.mixed_precision and not native_low_precision():
        warnings.warn("--mixed-precision on a CPU without AVX512-BF16 or AMX: bfloat16 is "
                      "emulated here and runs several times slower than float32 (leave the "
                      "flag out to choose by hardware)", stacklevel=2)
    keras.mixed_precision.set_global_policy(mixed_precision_policy() if mixed else "float32")


def use_mixed_precision(flag: bool | None) -> bool:
    """`--mixed-precision` as given, or (not given) whether this machine runs it natively.

    Mixed precision only pays where the low-precision matrix work is done in hardware: on a CPU
    without AVX512-BF16/AMX, bfloat16 is emulated and slower than float32, so "auto" keeps
    float32 there.
    """
    return native_low_precision() if flag is None else bool(flag)


def native_low_precision() -> bool:
    """True on a GPU of compute capability 7.0+ or a CPU with AVX512-BF16 or AMX-BF16."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        return tuple(details.get("compute_capability", (0, 0))) >= (7, 0)
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags Linux reports (empty elsewhere)."""
    try:
        with open(cpuinfo, encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


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


def log(config, message: str, level: int = 1) -> None:
    """Print `message` when `--verbose` is at least `level`; flushed, as runs are often piped
    to a log file and read while they go."""
    if config.verbose >= level:
        print(message, flush=True)
