import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


import pytest  # noqa: E402


@pytest.fixture(autouse=True)
def _float32_unless_asked(monkeypatch):
    """In-process runs train in float32 unless a test passes --mixed-precision: the automatic
    choice (bfloat16 on CPUs with AVX512-BF16) is tested on its own, and the global Keras policy
    is put back after every test so that one test's choice does not leak into the next."""
    from fcn_keras import runtime

    monkeypatch.setattr(runtime, "native_low_precision", lambda: False)
    yield
    import keras

    keras.mixed_precision.set_global_policy("float32")


@pytest.fixture(autouse=True)
def _no_determinism_leak(monkeypatch):
    """`--seed` turns on TF_DETERMINISTIC_OPS in the process environment; in-process runs must
    not hand it to the subprocesses of later tests (unseeded random ops fail under it)."""
    monkeypatch.delenv("TF_DETERMINISTIC_OPS", raising=False)
    yield
