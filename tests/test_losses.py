"""Each loss's value against a plain numpy computation: ce, dice and ce+dice, with ignored pixels
and class weights. (`--loss dice` once trained ce + dice: "ce" in "dice" is true.)"""

import numpy as np
import pytest

pytest.importorskip("tensorflow")

from fcn_keras.losses import SegmentationLoss, load_class_weights, median_frequency_weights  # noqa: E402

N_CLASSES = 4
IGNORE = 255


def batch(seed=0, batch_size=3, height=5, width=6):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(batch_size, height, width, N_CLASSES))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    labels = rng.integers(0, N_CLASSES, size=(batch_size, height, width, 1))
    labels[rng.random(labels.shape) < 0.2] = IGNORE
    return labels.astype(np.uint8), probs.astype(np.float32)


def numpy_ce(labels, probs, weights=None):
    """Mean over valid pixels of -w[y] log p[y], normalised by the sum of w over valid pixels."""
    labels = labels[..., 0]
    valid = labels < N_CLASSES
    safe = np.where(valid, labels, 0)
    picked = np.take_along_axis(probs, safe[..., None], -1)[..., 0]
    w = valid.astype(np.float64)
    if weights is not None:
        w = w * np.asarray(weights)[safe]
    return float((-np.log(np.clip(picked, 1e-7, 1)) * w).sum() / w.sum())


def numpy_dice(labels, probs, smooth=1.0):
    """1 - mean over the classes present in the truth of (2|X∩Y| + 1) / (|X| + |Y| + 1)."""
    labels = labels[..., 0]
    valid = labels < N_CLASSES
    scores = []
    for c in range(N_CLASSES):
        truth = ((labels == c) & valid).astype(np.float64)
        pred = probs[..., c] * valid
        if truth.sum() == 0:
            continue
        scores.append((2 * (truth * pred).sum() + smooth) / (truth.sum() + pred.sum() + smooth))
    return 1.0 - float(np.mean(scores))


def keras_loss(kind, labels, probs, weights=None):
    return float(SegmentationLoss(N_CLASSES, kind, weights)(labels, probs))


@pytest.mark.parametrize("weights", [None, [0.5, 1.0, 2.0, 4.0]])
def test_cross_entropy_matches_numpy(weights):
    labels, probs = batch()
    np.testing.assert_allclose(keras_loss("ce", labels, probs, weights),
                               numpy_ce(labels, probs, weights), rtol=1e-5)


def test_dice_alone_is_dice_only():
    labels, probs = batch(seed=1)
    value = keras_loss("dice", labels, probs)
    np.testing.assert_allclose(value, numpy_dice(labels, probs), rtol=1e-5)
    assert abs(value - (numpy_ce(labels, probs) + numpy_dice(labels, probs))) > 0.5


def test_dice_ignores_class_weights():
    labels, probs = batch(seed=2)
    np.testing.assert_allclose(keras_loss("dice", labels, probs, [9.0, 1.0, 1.0, 1.0]),
                               numpy_dice(labels, probs), rtol=1e-5)


@pytest.mark.parametrize("weights", [None, [1.0, 3.0, 0.25, 1.5]])
def test_ce_plus_dice_is_the_sum(weights):
    labels, probs = batch(seed=3)
    np.testing.assert_allclose(keras_loss("ce+dice", labels, probs, weights),
                               numpy_ce(labels, probs, weights) + numpy_dice(labels, probs),
                               rtol=1e-5)


def test_ignored_pixels_change_nothing():
    labels, probs = batch(seed=4)
    changed = probs.copy()
    ignored = labels[..., 0] == IGNORE
    changed[ignored] = np.roll(changed[ignored], 1, axis=-1)   # other probabilities there
    for kind in ("ce", "dice", "ce+dice"):
        np.testing.assert_allclose(keras_loss(kind, labels, changed),
                                   keras_loss(kind, labels, probs), rtol=1e-6)


def test_perfect_prediction_has_near_zero_loss():
    labels, _ = batch(seed=5)
    valid = labels[..., 0] < N_CLASSES
    probs = np.eye(N_CLASSES, dtype=np.float32)[np.where(valid, labels[..., 0], 0)]
    for kind in ("ce", "dice", "ce+dice"):
        assert keras_loss(kind, labels, probs) < 1e-3


def test_square_root_median_frequency_weights():
    pixels, images = [100, 10, 1000, 0], [2000, 2000, 2000, 0]
    full = median_frequency_weights(pixels, images)
    mild = load_class_weights("median-freq-sqrt", 4, lambda: (pixels, images))
    np.testing.assert_allclose(mild, np.sqrt(full))
    assert full[1] == pytest.approx(10.0) and mild[1] == pytest.approx(np.sqrt(10.0))
    assert mild[3] == 0.0   # a class never seen gets no weight


def numpy_lovasz(labels, probs):
    """Berman et al.'s reference `lovasz_softmax_flat` (classes='present'), on valid pixels."""
    labels = labels[..., 0].ravel()
    probs = probs.reshape(-1, N_CLASSES).astype(np.float64)
    keep = labels < N_CLASSES
    labels, probs = labels[keep], probs[keep]
    losses = []
    for c in range(N_CLASSES):
        fg = (labels == c).astype(np.float64)
        if fg.sum() == 0:
            continue
        errors = np.abs(fg - probs[:, c])
        order = np.argsort(-errors, kind="stable")
        fg_sorted = fg[order]
        gts = fg_sorted.sum()
        intersection = gts - np.cumsum(fg_sorted)
        union = gts + np.cumsum(1 - fg_sorted)
        jaccard = 1.0 - intersection / union
        jaccard[1:] = jaccard[1:] - jaccard[:-1]
        losses.append(float(np.dot(errors[order], jaccard)))
    return float(np.mean(losses))


def test_lovasz_matches_the_reference():
    labels, probs = batch(seed=6)
    np.testing.assert_allclose(keras_loss("lovasz", labels, probs), numpy_lovasz(labels, probs),
                               rtol=1e-4)
    np.testing.assert_allclose(keras_loss("ce+lovasz", labels, probs, [1.0, 2.0, 0.5, 1.0]),
                               numpy_ce(labels, probs, [1.0, 2.0, 0.5, 1.0])
                               + numpy_lovasz(labels, probs), rtol=1e-4)


def test_lovasz_skips_absent_classes_and_has_a_gradient():
    import tensorflow as tf
    labels, probs = batch(seed=7)
    labels[labels == 3] = 0   # class 3 absent from the truth
    np.testing.assert_allclose(keras_loss("lovasz", labels, probs), numpy_lovasz(labels, probs),
                               rtol=1e-4)
    logits = tf.Variable(np.log(probs))
    with tf.GradientTape() as tape:
        loss = SegmentationLoss(N_CLASSES, "lovasz")(labels, tf.nn.softmax(logits))
    grad = tape.gradient(loss, logits).numpy()
    assert np.isfinite(grad).all() and np.abs(grad).sum() > 0
    ignored = labels[..., 0] == IGNORE
    assert np.abs(grad[ignored]).max() == 0.0   # ignored pixels get no gradient
