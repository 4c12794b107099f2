"""The metrics of `fcn_keras.metrics` (pixel accuracy, mean class accuracy, per-class IoU, mIoU
over the classes present in truth or prediction, frequency-weighted IoU, the book's per-image
mIoU and pixel accuracy) checked against hand-computed confusion matrices."""

import json

import numpy as np
import pytest

from fcn_keras.metrics import BookMetrics, ConfusionMatrix, compute_metrics, format_table

# 3 classes, 10 pixels; n_ij (rows true, columns predicted):
#   true 0: 3 as 0, 1 as 1          -> t_0 = 4
#   true 1: 2 as 1, 1 as 2          -> t_1 = 3
#   true 2: 1 as 0, 2 as 2          -> t_2 = 3
Y_TRUE = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 0, 1, 1, 1, 2, 0, 2, 2])
EXPECTED = np.array([[3, 1, 0], [0, 2, 1], [1, 0, 2]])


def test_matrix_counts_rows_true_columns_predicted():
    cm = ConfusionMatrix(3)
    cm.update(Y_TRUE, Y_PRED)
    np.testing.assert_array_equal(cm.matrix, EXPECTED)
    assert cm.matrix.dtype == np.int64


def test_hand_computed_figures():
    metrics = ConfusionMatrix(3)
    metrics.update(Y_TRUE.reshape(2, 5), Y_PRED.reshape(2, 5))
    result = metrics.compute()
    # IoU_0 = 3 / (4 + 4 - 3), IoU_1 = 2 / (3 + 3 - 2), IoU_2 = 2 / (3 + 3 - 2)
    ious = [3 / 5, 2 / 4, 2 / 4]
    assert result["pixel_accuracy"] == pytest.approx(7 / 10)
    assert result["mean_accuracy"] == pytest.approx(np.mean([3 / 4, 2 / 3, 2 / 3]))
    assert result["per_class_iou"] == pytest.approx(ious)
    assert result["mean_iou"] == pytest.approx(np.mean(ious))
    assert result["fw_iou"] == pytest.approx((4 * ious[0] + 3 * ious[1] + 3 * ious[2]) / 10)
    assert result["per_class_pixels"] == [4, 3, 3]
    assert result["present"] == [True, True, True]
    json.dumps(result)


def test_absent_class_is_left_out_of_miou_and_mean_accuracy():
    cm = ConfusionMatrix(4)
    cm.update(Y_TRUE, Y_PRED)  # class 3 appears in neither array
    result = cm.compute()
    assert result["per_class_iou"][3] is None
    assert result["per_class_accuracy"][3] is None
    assert result["present"] == [True, True, True, False]
    assert result["mean_iou"] == pytest.approx(np.mean([3 / 5, 2 / 4, 2 / 4]))
    assert result["mean_accuracy"] == pytest.approx(np.mean([3 / 4, 2 / 3, 2 / 3]))


def test_class_only_predicted_counts_with_zero_iou():
    cm = ConfusionMatrix(3)
    cm.update([0, 0, 1, 1], [0, 2, 1, 1])  # class 2 never true, predicted once
    result = cm.compute()
    assert result["per_class_iou"] == pytest.approx([1 / 2, 1.0, 0.0])
    assert result["mean_iou"] == pytest.approx(0.5)
    assert result["per_class_accuracy"][2] is None
    assert result["mean_accuracy"] == pytest.approx(np.mean([1 / 2, 1.0]))
    assert result["fw_iou"] == pytest.approx((2 * 0.5 + 2 * 1.0) / 4)


def test_ignored_pixels_are_excluded():
    cm = ConfusionMatrix(3)
    y_true = np.concatenate([Y_TRUE, [255, 255, 255]])
    y_pred = np.concatenate([Y_PRED, [0, 1, 2]])
    cm.update(y_true, y_pred)
    np.testing.assert_array_equal(cm.matrix, EXPECTED)


def test_custom_ignore_index_like_camvid_void():
    cm = ConfusionMatrix(2, ignore_index=2)
    cm.update([0, 1, 2, 2], [0, 1, 1, 0])
    np.testing.assert_array_equal(cm.matrix, [[1, 0], [0, 1]])


def test_out_of_range_values_raise():
    cm = ConfusionMatrix(3)
    with pytest.raises(ValueError, match="y_true holds values \\[3\\]"):
        cm.update([0, 3], [0, 0])
    with pytest.raises(ValueError, match="y_pred holds values \\[7\\]"):
        cm.update([0, 1], [0, 7])
    with pytest.raises(ValueError, match="shape"):
        cm.update([0, 1], [0, 1, 2])
    with pytest.raises(ValueError, match="integer"):
        cm.update([0, 1], [0.0, 1.0])


def test_perfect_prediction_scores_one_everywhere():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, size=(2, 16, 16))
    labels[0, :2] = 255
    cm = ConfusionMatrix(5)
    cm.update(labels, labels)
    book = BookMetrics(5)
    book.update_batch(labels, labels)
    result = cm.compute()
    for key in ("pixel_accuracy", "mean_accuracy", "mean_iou", "fw_iou"):
        assert result[key] == pytest.approx(1.0)
    assert result["per_class_iou"] == pytest.approx([1.0] * 5)
    assert book.compute() == pytest.approx({"book_miou": 1.0, "book_pla": 1.0})


def test_merge_equals_one_update_and_reset_clears():
    a, b, whole = ConfusionMatrix(3), ConfusionMatrix(3), ConfusionMatrix(3)
    a.update(Y_TRUE[:4], Y_PRED[:4])
    b.update(Y_TRUE[4:], Y_PRED[4:])
    whole.update(Y_TRUE, Y_PRED)
    np.testing.assert_array_equal(a.merge(b).matrix, whole.matrix)
    with pytest.raises(ValueError, match="merge"):
        a.merge(ConfusionMatrix(4))
    a.reset()
    assert a.matrix.sum() == 0
    assert a.compute()["mean_iou"] is None


def test_compute_metrics_on_a_plain_matrix():
    result = compute_metrics(EXPECTED)
    assert result["pixel_accuracy"] == pytest.approx(0.7)
    with pytest.raises(ValueError, match="square"):
        compute_metrics(np.zeros((2, 3)))


def test_book_figures_on_two_images_by_hand():
    # image 1 (2x3), classes 0..2:
    #   true [[0,0,1],[1,2,2]]  pred [[0,1,1],[1,2,0]]
    #   class 0: inter 1, union |{0,1,5}| = 3 -> 1/3
    #   class 1: inter 2, union |{1,2,3}| = 3 -> 2/3
    #   class 2: inter 1, union |{4,5}| = 2   -> 1/2
    #   miou = (1/3 + 2/3 + 1/2) / 3 = 1/2 ; pla = 4/6
    # image 2 (2x2): true [[0,0],[0,255]] pred [[0,2,0,1]] -> class 0 only in gt,
    #   ignored pixel out: class 0 inter 2, union 3 -> 2/3 (class 2 predicted but skipped)
    #   pla = 2/3
    book = BookMetrics(3)
    book.update([[0, 0, 1], [1, 2, 2]], [[0, 1, 1], [1, 2, 0]])
    book.update([[0, 0], [0, 255]], [[0, 2], [0, 1]])
    result = book.compute()
    assert result["book_miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert result["book_pla"] == pytest.approx((4 / 6 + 2 / 3) / 2)
    assert book.n_images == 2


def test_book_figures_match_the_books_one_hot_formula():
    """The book's own arithmetic on one-hot masks, written out, gives the same numbers."""
    rng = np.random.default_rng(1)
    n = 4
    book = BookMetrics(n)
    s_iou = s_pla = 0.0
    for _ in range(3):
        true = rng.integers(0, n - 1, size=(6, 7))  # class 3 never in the ground truth
        pred = rng.integers(0, n, size=(6, 7))
        book.update(true, pred)
        gt, seg = np.eye(n)[true], np.eye(n)[pred]
        s_pla += (gt == seg).all(axis=2).mean()
        ious = []
        for i in range(n):
            if gt[..., i].sum() < np.finfo(float).eps:
                continue
            inter = (seg[..., i] * gt[..., i]).sum()
            union = np.ceil((seg[..., i] + gt[..., i]) / 2.0).sum()
            ious.append(inter / union)
        s_iou += np.mean(ious)
    assert book.compute()["book_miou"] == pytest.approx(s_iou / 3)
    assert book.compute()["book_pla"] == pytest.approx(s_pla / 3)


def test_book_skips_images_without_labelled_pixels_and_merges():
    a, b = BookMetrics(2), BookMetrics(2)
    assert a.compute() == {"book_miou": None, "book_pla": None}
    a.update([255, 255], [0, 1])
    assert a.n_skipped == 1 and a.n_images == 0
    b.update([0, 1], [0, 0])
    a.merge(b)
    assert a.compute() == pytest.approx({"book_miou": (1 / 2 + 0) / 2, "book_pla": 0.5})


def test_format_table_lists_classes_and_summary():
    cm = ConfusionMatrix(4, class_names=["bg", "water", "soda", "juice"])
    cm.update(Y_TRUE, Y_PRED)
    metrics = cm.compute()
    metrics.update({"book_miou": 0.5, "book_pla": 0.75})
    text = format_table(metrics, ["bg", "water", "soda", "juice"])
    lines = text.splitlines()
    assert lines[0].split() == ["class", "IoU", "acc", "pixels"]
    assert lines[1].split() == ["bg", "0.6000", "0.7500", "4"]
    assert lines[4].split() == ["juice", "-", "-", "0"]
    assert "mean IoU" in text and "book mIoU" in text and "0.7500" in text
    assert str(cm).splitlines()[1].startswith("bg")
    with pytest.raises(ValueError, match="class names"):
        format_table(metrics, ["a"])


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.int64, np.uint64])
def test_counts_are_the_same_for_every_integer_type(dtype):
    """Labels are counted in their own type (no int64 copy); every type gives the counts of
    a plain pair-by-pair tally, ignored pixels left out."""
    rng = np.random.default_rng(7)
    truth = rng.integers(0, 5, (3, 17, 23))
    pred = rng.integers(0, 5, (3, 17, 23))
    truth[0, :4] = 255
    expected = np.zeros((5, 5), np.int64)
    for t, p in zip(truth.ravel(), pred.ravel()):
        if t != 255:
            expected[t, p] += 1
    matrix = ConfusionMatrix(5)
    matrix.update(truth.astype(dtype), pred.astype(dtype))
    np.testing.assert_array_equal(matrix.matrix, expected)


def test_negative_and_boolean_labels():
    matrix = ConfusionMatrix(2)
    matrix.update(np.array([True, False, True]), np.array([True, True, False]))
    np.testing.assert_array_equal(matrix.matrix, [[0, 1], [1, 1]])
    with pytest.raises(ValueError, match=r"y_pred holds values \[-1\]"):
        ConfusionMatrix(2).update(np.array([0, 1]), np.array([0, -1]))
