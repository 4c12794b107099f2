"""`--remat` (fcn_keras.remat): the backbone and the head before its last upsampling recomputed
in the backward pass give the same training as keeping their activations, and the weights file
layout does not change."""

import keras
import numpy as np
import pytest

from fcn_keras import remat as remat_module
from fcn_keras.losses import SegmentationLoss
from fcn_keras.models import build_model
from fcn_keras.remat import enable_remat

MODEL = dict(n=1, layers_=3, head_filters=8, pyramid_filters=16)


def _model(remat: bool, arch="fcn", **extra):
    keras.utils.set_random_seed(3)
    model, _ = build_model(arch, 3, **MODEL, **extra)
    if remat:
        assert enable_remat(model)
    return model


def _train(model, steps=3):
    rng = np.random.default_rng(0)
    x = rng.random((2, 64, 64, 3), np.float32)
    y = rng.integers(0, 3, (2, 64, 64, 1)).astype("int32")
    model.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9),
                  loss=SegmentationLoss(3))
    history = model.fit(x, y, batch_size=2, epochs=steps, verbose=0, shuffle=False)
    return history.history["loss"], [w.numpy() for w in model.weights]


@pytest.mark.parametrize("arch,extra", [("fcn", {}), ("fcn32s", {}),
                                        ("fcn4s", dict(context="aspp", pyramid_blocks=1))])
def test_remat_trains_the_same(arch, extra):
    plain, remat = _model(False, arch, **extra), _model(True, arch, **extra)
    for a, b in zip(plain.weights, remat.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    before = remat_module.RECOMPUTED["traces"]
    loss_plain, weights_plain = _train(plain)
    assert remat_module.RECOMPUTED["traces"] == before
    loss_remat, weights_remat = _train(remat)
    assert remat_module.RECOMPUTED["traces"] > before   # the backbone was recomputed
    np.testing.assert_allclose(loss_remat, loss_plain, rtol=1e-4)
    moved = 0
    for w, a, b in zip(plain.weights, weights_plain, weights_remat):
        np.testing.assert_allclose(b, a, rtol=1e-3, atol=1e-4, err_msg=w.path)
        moved += "moving_mean" in w.path and not np.allclose(a, 0)
    assert moved   # the batch norms' statistics were updated (once: they match)


def test_weight_files_interchange_with_and_without_remat(tmp_path):
    plain, remat = _model(False), _model(True)
    _train(remat, steps=1)
    remat.save_weights(tmp_path / "remat.weights.h5")
    plain.load_weights(tmp_path / "remat.weights.h5")
    for a, b in zip(plain.weights, remat.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    plain.save_weights(tmp_path / "plain.weights.h5")
    other = _model(True)
    other.load_weights(tmp_path / "plain.weights.h5")
    for a, b in zip(plain.weights, other.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_the_backbone_is_recomputed_one_residual_unit_at_a_time():
    """The ResNet is cut after each residual unit (3 stages x n units), the pyramid is the last
    piece; the pieces chained give the backbone's outputs, and each is recomputed."""
    from fcn_keras.remat import _backbones, residual_segments
    model = _model(False)
    backbone = _backbones(model)[0]
    pieces = residual_segments(backbone)
    assert len(pieces) == 3 * MODEL["n"] + 1
    assert {id(w) for p in pieces for w in p.weights} == {id(w) for w in backbone.weights}
    x = np.random.default_rng(1).random((1, 64, 64, 3), np.float32)
    y = x
    for piece in pieces:
        y = piece(y)
    for a, b in zip(backbone(x), y, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    remat = _model(True)
    before = remat_module.RECOMPUTED["traces"]
    _train(remat, steps=1)
    built = remat_module.RECOMPUTED["traces"] - before
    # every trace of the step: one per piece, and one for the head's recomputed piece
    assert built > 0 and built % (len(pieces) + 1) == 0


@pytest.mark.parametrize("arch,extra,recomputed,kept", [
    ("fcn", {}, {"bn_fcn_8", "bn_fcn_32", "bn_up_x2"}, {"bn_up_x4"}),
    ("fcn4s", dict(context="aspp"), {"context_project_bn"}, set()),
])
def test_the_head_is_recomputed_up_to_its_last_upsampling(arch, extra, recomputed, kept,
                                                          monkeypatch):
    """The head before its last upsampling is one recomputed piece (its batch norms run again
    under `recomputing()`); the full-resolution tail is kept; the pieces chained give the
    core's output."""
    from fcn_keras import layers as layers_module
    from fcn_keras.remat import _backbones, _head, head_segments
    model = _model(False, arch, **extra)
    core, trunk = _head(model, _backbones(model)[0])
    assert core.name == arch
    first, tail = head_segments(core, trunk)
    assert {w.path for w in first.weights + tail.weights} == {
        w.path for w in core.weights} - {w.path for w in trunk.weights}
    assert any(isinstance(layer, keras.layers.Conv2DTranspose) for layer in tail.layers)
    transposed = [layer for layer in layers_module.all_layers(model)
                  if isinstance(layer, layers_module.Conv2DTranspose)]
    assert (arch != "fcn" or transposed) and not any(layer.lean for layer in transposed)
    remat_module.enable_remat(model)
    assert all(layer.lean for layer in transposed)
    x = np.random.default_rng(1).random((1, 64, 64, 3), np.float32)
    np.testing.assert_allclose(np.asarray(tail(first(trunk(x)))), np.asarray(core(x)),
                               rtol=1e-5, atol=1e-6)

    seen = {}
    call = layers_module.BatchNormalization.call

    def spy(self, inputs, training=None, mask=None):
        seen.setdefault(self.name, set()).add(remat_module.recomputing())
        return call(self, inputs, training=training, mask=mask)
    monkeypatch.setattr(layers_module.BatchNormalization, "call", spy)
    _train(_model(True, arch, **extra), steps=1)
    for name in recomputed:
        assert seen[name] == {False, True}, name
    for name in kept:
        assert seen[name] == {False}, name
