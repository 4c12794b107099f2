"""The averaged weights of `--ema`, swapped in for validation and the best-weights file.

Keras' optimizers keep an exponential moving average of the trainable weights when built with
`use_ema=True` (Polyak averaging): the average of the last few hundred steps generalises better
than the last step's weights, most of all in short, high-learning-rate runs. Keras'
`SwapEMAWeights` callback swaps the averages and the weights in place, which would leave the
resumable checkpoint written after validation with the two exchanged; here the raw weights are
copied aside instead, the averages written into the model for the `with` block, and the raw
weights put back after it, so training and `--resume` go on from exactly where they were.
"""

from __future__ import annotations

from contextlib import contextmanager

import keras


def ema_optimizer(model: keras.Model):
    """The optimizer that holds `model`'s moving averages, or None (no `--ema`, not built)."""
    optimizer = getattr(model, "optimizer", None)
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)   # LossScaleOptimizer
    if not getattr(optimizer, "use_ema", False) or \
            not getattr(optimizer, "_model_variables_moving_average", None):
        return None
    return optimizer


@contextmanager
def averaged_weights(model: keras.Model):
    """Within the block, `model`'s trainable weights are the optimizer's moving averages;
    afterwards the weights it trains are back, unchanged. Without `--ema` it does nothing."""
    optimizer = ema_optimizer(model)
    if optimizer is None:
        yield model
        return
    variables = model.trainable_variables
    saved = [keras.ops.convert_to_numpy(v) for v in variables]
    optimizer.finalize_variable_values(variables)
    try:
        yield model
    finally:
        for variable, value in zip(variables, saved):
            variable.assign(value)
