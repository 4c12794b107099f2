"""Training with less memory: the backbone's activations are recomputed in the backward pass
instead of being kept from the forward pass (gradient checkpointing, `--remat`).

Keras' own `keras.RematScope` / `keras.remat` wrap each layer in `tf.recompute_grad`. Two
things make that unfit here: a layer-sized segment saves nothing in Conv-BN-ReLU chains (each
layer's input must be kept either way, and that is all a convolution, a fused batch norm or a
ReLU keeps), and a recomputed batch norm would update its moving statistics a second time.
`enable_remat` instead cuts the backbone (the nested `keras.Model` of the pyramid features)
at its residual units' outputs, where one tensor crosses, and makes each piece a segment: the
forward pass keeps only the tensors at the cuts, and the backward pass runs one piece again at a
time under `recomputing()`, which this package's `BatchNormalization` reads to leave the moving
statistics alone. Measured (benchmarks/results-round5.json), peak RSS is 0.77x / 0.73x of
training without the flag at 192x256 / 352x480, 0.52 / 0.42 of the book's; TensorFlow's own
allocator peak falls by 46%, and what remains is mostly outside it (oneDNN, the C allocator;
benchmarks/probes-2026-12-03/README.md).
The model's layers, weights and results are unchanged (the weights file layout is the same
with or without the flag); the price is one more forward pass of the backbone per step.
"""

from __future__ import annotations

import contextlib
import threading

_STATE = threading.local()
RECOMPUTED = {"traces": 0}   # recomputations built (gradient traces through a segment)


def recomputing() -> bool:
    """True while a rematerialised segment is being run again for its gradient."""
    return getattr(_STATE, "depth", 0) > 0


@contextlib.contextmanager
def _recomputing():
    _STATE.depth = getattr(_STATE, "depth", 0) + 1
    try:
        yield
    finally:
        _STATE.depth -= 1


def recompute(call):
    """`call(inputs, **kwargs)` whose activations are recomputed for the gradient."""
    import tensorflow as tf

    def wrapped(inputs, *args, **kwargs):
        if args or not tf.is_tensor(inputs):
            return call(inputs, *args, **kwargs)

        @tf.custom_gradient
        def segment(x):
            outputs = call(x, **kwargs)

            def grad(*upstream, variables=None):
                variables = list(variables or [])
                RECOMPUTED["traces"] += 1
                # the recomputation waits for the upstream gradients, so the graph optimiser
                # cannot merge it with the forward pass (which would keep its activations)
                with tf.control_dependencies([g for g in upstream if g is not None]):
                    x_again = tf.identity(x)
                with _recomputing(), tf.GradientTape() as tape:
                    tape.watch(x_again)
                    again = tf.nest.flatten(call(x_again, **kwargs))
                grads = tape.gradient(again, [x_again] + variables,
                                      output_gradients=list(upstream),
                                      unconnected_gradients=tf.UnconnectedGradients.ZERO)
                return grads[0], grads[1:]
            return outputs, grad
        return segment(inputs)
    return wrapped


def _backbones(model) -> list:
    """The innermost nested models of `model` (the backbone of every architecture here)."""
    import keras
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            inner = _backbones(layer)
            found.extend(inner or [layer])
    return found


class _Remat:
    mode = "fcn_keras.backbone"


def residual_segments(backbone) -> list:
    """`backbone` cut into consecutive sub-models at its residual units' outputs (the `Add`
    layers of the trunk, before the first of its outputs): one tensor crosses each cut, so a
    segment recomputed in the backward pass keeps only its own activations at a time, not the
    whole backbone's. The sub-models share the backbone's layers (no new weights). A backbone
    without such cuts (the keras.applications ones, whose trunk is a nested model) is one
    segment: itself."""
    import keras
    outputs = backbone.outputs
    producers = {id(t._keras_history[0]) for t in outputs}
    trunk = []
    for layer in backbone.layers:
        if id(layer) in producers:
            break
        trunk.append(layer)
    cuts = [layer.output for layer in trunk if isinstance(layer, keras.layers.Add)]
    pieces, start = [], backbone.inputs[0]
    for cut in cuts:
        try:
            piece = keras.Model(start, cut, name=f"{backbone.name}_segment{len(pieces)}")
        except ValueError:        # another tensor crosses this cut: the segment goes on
            continue
        pieces.append(piece)
        start = cut
    try:
        pieces.append(keras.Model(start, outputs, name=f"{backbone.name}_segment{len(pieces)}"))
    except ValueError:
        return [backbone]
    return pieces


def _segmented(pieces):
    """The backbone's call run segment by segment, each recomputed for its gradient."""
    calls = [recompute(piece.call) for piece in pieces]

    def call(inputs, *args, **kwargs):
        x = inputs
        for piece_call in calls:
            x = piece_call(x, *args, **kwargs)
        return x
    return call


def enable_remat(model) -> list[str]:
    """Make each backbone of `model` a chain of rematerialised segments, one per residual unit
    (takes effect at the next trace); returns the backbones' names."""
    names = []
    for backbone in _backbones(model):
        pieces = residual_segments(backbone)
        if pieces == [backbone]:
            call = None
        else:
            call = _segmented(pieces)
        # Layer.__call__ routes through `rematerialized_call` when `_remat_mode` is set
        object.__setattr__(backbone, "_remat_mode", _Remat())
        object.__setattr__(backbone, "rematerialized_call",
                           lambda layer_call, *a, _call=call, **k: _call or recompute(layer_call))
        names.append(backbone.name)
    return names
