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
statistics alone. The head is cut once, at the input of its last upsampling layer: what comes
before (for the book's head the pyramid levels' Conv-BN-ReLU and upsampling, the concatenation
and the first transposed-conv block) is one more recomputed segment; the full-resolution tail
is not (`head_segments`). Measured (benchmarks/results-round5.json), the backbone alone gave a
peak RSS of 0.77x / 0.73x of training without the flag at 192x256 / 352x480, 0.52 / 0.42 of
the book's; with the head segment and the transposed convs' leaner gradient (`lean`, only
with this flag: `fcn_keras.layers._subpixel_tconv_lean`) see benchmarks/results-round6.json.
Where the transposed convs train with TensorFlow's own op (bfloat16 on a CPU with AMX,
`fcn_keras.layers.subpixel_training_pays`) there is no sub-pixel product to make lean; the
peak with the flag stayed under half of the book's there (0.43 / 0.37,
benchmarks/results-round7.json).
The model's layers, weights and results are unchanged (the weights file layout is the same
with or without the flag); the price is one more forward pass of the backbone and of the head
before its last upsampling per step.
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
    """`call(inputs, **kwargs)` whose activations are recomputed for the gradient; `inputs` is
    a tensor or a list of tensors (the backbone's outputs entering a head)."""
    import tensorflow as tf

    def wrapped(inputs, *args, **kwargs):
        flat = tf.nest.flatten(inputs)
        if args or not flat or not all(tf.is_tensor(t) for t in flat):
            return call(inputs, *args, **kwargs)

        @tf.custom_gradient
        def segment(*xs):
            outputs = call(tf.nest.pack_sequence_as(inputs, list(xs)), **kwargs)

            def grad(*upstream, variables=None):
                variables = list(variables or [])
                RECOMPUTED["traces"] += 1
                # the recomputation waits for the upstream gradients, so the graph optimiser
                # cannot merge it with the forward pass (which would keep its activations)
                with tf.control_dependencies([g for g in upstream if g is not None]):
                    xs_again = [tf.identity(x) for x in xs]
                with _recomputing(), tf.GradientTape() as tape:
                    for x in xs_again:
                        tape.watch(x)
                    again = tf.nest.flatten(
                        call(tf.nest.pack_sequence_as(inputs, xs_again), **kwargs))
                grads = tape.gradient(again, xs_again + variables,
                                      output_gradients=list(upstream),
                                      unconnected_gradients=tf.UnconnectedGradients.ZERO)
                return grads[:len(xs)], grads[len(xs):]
            return outputs, grad
        return segment(*flat)
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


def _children(model) -> list:
    import keras
    return [layer for layer in model.layers if isinstance(layer, keras.Model)]


def _contains(model, inner) -> bool:
    return model is inner or any(_contains(child, inner) for child in _children(model))


def _node_in(model, layer):
    """The node of `layer` in `model`'s graph (None when not called exactly once there)."""
    nodes = [node for group in model._nodes_by_depth.values() for node in group
             if node.operation is layer]
    return nodes[0] if len(nodes) == 1 else None


def _head(model, backbone):
    """`(core, trunk)`: the innermost model of `model` around `backbone` that takes its input
    straight into a nested model `trunk` holding the backbone, followed by layers with weights
    (the segmentation head); None when there is no such model."""
    path, node = [], model
    while node is not backbone:
        child = next((c for c in _children(node) if _contains(c, backbone)), None)
        if child is None:
            return None
        path.append((node, child))
        node = child
    import keras
    for core, trunk in reversed(path):
        call = _node_in(core, trunk)
        if call is None or len(core.inputs) != 1 or len(call.input_tensors) != 1 \
                or call.input_tensors[0] is not core.inputs[0]:
            continue
        if any(layer.weights for layer in core.layers if layer is not trunk
               and not isinstance(layer, keras.layers.InputLayer)):
            return core, trunk
    return None


def _upsamples(layer) -> bool:
    import keras

    from fcn_keras.layers import BilinearUpSampling2D
    if isinstance(layer, (BilinearUpSampling2D, keras.layers.UpSampling2D)):
        return True
    return isinstance(layer, keras.layers.Conv2DTranspose) and max(layer.strides) > 1


def head_segments(core, trunk) -> list:
    """The head of `core` (its layers after the nested model `trunk`, which takes `core`'s
    input) as `[recomputed, kept]` sub-models sharing its layers: cut at the input of the last
    upsampling layer, where one tensor crosses. The first piece (the head at the backbone's
    resolutions: for the book's head the pyramid's Conv-BN-ReLU and upsampling, the
    concatenation and the first transposed-conv block) is recomputed in the backward pass;
    the last upsampling and what follows it at full resolution are not: they are the last of
    the forward pass and the first of the backward, so recomputing them would rebuild at once
    what it freed. `[]` when there is no such cut (the head is left alone)."""
    import keras
    features = list(_node_in(core, trunk).output_tensors)
    head = [layer for layer in core.layers
            if layer is not trunk and not isinstance(layer, keras.layers.InputLayer)]
    last = [layer for layer in head if _upsamples(layer)][-1:]
    if not last or len(last[0]._inbound_nodes) != 1:
        return []
    cut = last[0].input
    if any(cut is feature for feature in features):
        return []                          # nothing before the last upsampling
    try:
        kept = keras.Model(cut, core.outputs, name=f"{core.name}_head_kept")
        recomputed = keras.Model(features[0] if len(features) == 1 else features, cut,
                                 name=f"{core.name}_head_recomputed")
    except ValueError:                     # another tensor crosses the cut
        return []
    return [recomputed, kept]


def _headed(trunk, pieces):
    """The core's call: its backbone (segmented itself), then the head's pieces."""
    recomputed, kept = pieces
    calls = [recompute(recomputed.call), kept.call]

    def call(inputs, *args, **kwargs):
        x = trunk(inputs, *args, **kwargs)
        for piece_call in calls:
            x = piece_call(x, *args, **kwargs)
        return x
    return call


def _lean_transposed_convs(model) -> None:
    """This package's transposed convs in `model` (nested models included) compute their
    gradients phase by phase (`layers.Conv2DTranspose.lean`): less memory, a little slower,
    so only with `--remat`."""
    from fcn_keras.layers import Conv2DTranspose, all_layers
    for layer in all_layers(model):
        if isinstance(layer, Conv2DTranspose):
            layer.lean = True


def enable_remat(model) -> list[str]:
    """Make each backbone of `model` a chain of rematerialised segments, one per residual unit,
    and the head around it (up to its last upsampling) one more, and its transposed convs lean
    (takes effect at the next trace); returns the names of the backbones and of the models
    whose head was cut."""
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
    _lean_transposed_convs(model)
    heads = {id(h[0]): h for h in map(lambda b: _head(model, b), _backbones(model)) if h}
    for core, trunk in heads.values():
        pieces = head_segments(core, trunk)
        if not pieces:
            continue
        object.__setattr__(core, "_remat_mode", _Remat())
        object.__setattr__(core, "rematerialized_call",
                           lambda layer_call, *a, _call=_headed(trunk, pieces), **k: _call)
        names.append(core.name)
    return names
