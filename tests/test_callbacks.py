"""The AccuracyCallback saves only on improvement; schedules follow the book."""

import json

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from fcn_keras.callbacks import AccuracyCallback, History, book_lr, make_schedule  # noqa: E402


def tiny_model(compiled=True):
    inputs = keras.Input((8, 8, 3))
    outputs = keras.layers.Softmax()(keras.layers.Conv2D(2, 1)(inputs))
    model = keras.Model(inputs, outputs)
    if compiled:
        model.compile(optimizer=keras.optimizers.Adam(1e-3),
                      loss="sparse_categorical_crossentropy")
    return model


def test_saves_only_when_miou_improves(tmp_path, monkeypatch):
    scores = iter([0.30, 0.20, 0.50, 0.50])
    fake = lambda: {"mean_iou": next(scores), "pixel_accuracy": 0.9, "book_miou": 0.4}  # noqa
    history = History(tmp_path, "run")
    weights = tmp_path / "best.weights.h5"
    callback = AccuracyCallback(fake, weights, history, verbose=0)
    model = tiny_model()
    saves = []
    original = model.save_weights
    monkeypatch.setattr(model, "save_weights", lambda path: (saves.append(path), original(path)))
    x = np.random.rand(4, 8, 8, 3).astype("float32")
    y = np.random.randint(0, 2, (4, 8, 8, 1))
    model.fit(x, y, epochs=4, callbacks=[callback], verbose=0)
    assert len(saves) == 2  # epochs 1 and 3 improved; equal is not an improvement
    assert weights.exists() and callback.best == 0.5
    records = json.loads(history.json_path.read_text())
    assert [r["val_mean_iou"] for r in records] == [0.30, 0.20, 0.50, 0.50]
    assert History(tmp_path, "run").load().best_miou == 0.5


def test_best_weights_leave_the_optimizer_state_out(tmp_path):
    h5py = pytest.importorskip("h5py")
    history = History(tmp_path, "run")
    weights = tmp_path / "best.weights.h5"
    callback = AccuracyCallback(lambda: {"mean_iou": 0.5, "pixel_accuracy": 0.9,
                                         "book_miou": 0.4}, weights, history, verbose=0)
    model = tiny_model()
    x = np.random.rand(4, 8, 8, 3).astype("float32")
    y = np.random.randint(0, 2, (4, 8, 8, 1))
    model.fit(x, y, epochs=1, callbacks=[callback], verbose=0)
    full = tmp_path / "full.weights.h5"
    model.save_weights(full)
    with h5py.File(full) as h5:
        assert "optimizer" in h5                  # what Keras 3 writes for a compiled model
    with h5py.File(weights) as h5:
        assert "optimizer" not in h5 and "layers" in h5
    assert weights.stat().st_size < full.stat().st_size
    fresh = tiny_model(compiled=False)   # as the app restores: before compiling
    fresh.load_weights(weights)
    for saved, loaded in zip(model.get_weights(), fresh.get_weights()):
        np.testing.assert_array_equal(saved, loaded)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_book_schedule():
    assert book_lr(0) == 1e-3 and book_lr(40) == 1e-3
    assert book_lr(41) == pytest.approx(5e-4)
    assert book_lr(61) == pytest.approx(1e-4)
    assert book_lr(81) == pytest.approx(5e-5)


def test_poly_cosine_and_warmup():
    cosine = make_schedule("cosine", 0.1, 10)
    assert cosine(0) == pytest.approx(0.1) and cosine(5) == pytest.approx(0.05)
    poly = make_schedule("poly", 0.1, 10, warmup_epochs=2)
    assert poly(0) < poly(1) < 0.1
    assert poly(2) == pytest.approx(0.1)
    assert poly(9) < 0.03
