"""Segmentation metrics from one dataset-wide confusion matrix, ignored pixels excluded.

Per-batch averages of IoU are biased towards small images and rare classes, so every figure here
is computed from a single confusion matrix accumulated over the whole split, as torchvision's
reference scripts do. With n_ij = pixels of true class i predicted as j and t_i = sum_j n_ij:

- pixel accuracy = sum_i n_ii / sum_i t_i
- mean accuracy = mean of n_ii / t_i over the classes with t_i > 0
- IoU_i = n_ii / (t_i + sum_j n_ji - n_ii)
- mIoU = mean of IoU_i over the classes present in the ground truth or the prediction
- frequency-weighted IoU = sum_i t_i IoU_i / sum_i t_i

Pixels whose ground truth is the ignore index are left out of everything. `BookMetrics` adds the
book's per-image figures (`book_miou`, `book_pla`) so results can be compared with the book.
Everything returned is plain Python (floats, ints, None for undefined values): ready for JSON.
"""

from __future__ import annotations

import numpy as np

from fcn_keras.classes import IGNORE_INDEX


def _as_labels(values, name: str) -> np.ndarray:
    """`values` as a flat integer array, in its own integer type (uint8 labels stay uint8:
    an int64 copy of every pixel cost more than the counting)."""
    array = np.asarray(values)
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integer class indices, got dtype {array.dtype} "
                         "(take the argmax of probabilities first)")
    return array.reshape(-1)


def _out_of_range(values: np.ndarray, n_classes: int) -> list[int]:
    """Up to ten distinct values outside 0..n_classes-1 (a min/max pass first: the usual
    answer, none, costs no boolean arrays)."""
    if not values.size or (values.min() >= 0 and values.max() < n_classes):
        return []
    bad = values[(values < 0) | (values >= n_classes)]
    return [int(v) for v in np.unique(bad)[:10]]


def _pair_counts(y_true, y_pred, n_classes: int, ignore_index: int) -> np.ndarray:
    """The n x n confusion counts of one pair of label arrays, ignored pixels left out."""
    true = _as_labels(y_true, "y_true")
    pred = _as_labels(y_pred, "y_pred")
    if true.shape != pred.shape:
        raise ValueError(f"y_true and y_pred differ in shape: {np.shape(y_true)} vs "
                         f"{np.shape(y_pred)}")
    keep = true != ignore_index
    if not keep.all():
        true, pred = true[keep], pred[keep]
    bad = _out_of_range(true, n_classes)
    if bad:
        raise ValueError(f"y_true holds values {bad} outside 0..{n_classes - 1} that are not "
                         f"the ignore index {ignore_index}")
    bad = _out_of_range(pred, n_classes)
    if bad:
        raise ValueError(f"y_pred holds values {bad} outside 0..{n_classes - 1}")
    pairs = true.astype(np.intp) * n_classes
    np.add(pairs, pred, out=pairs, casting="unsafe")   # both checked in range above
    counts = np.bincount(pairs, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).astype(np.int64)


def _ratio_or_none(numerator: float, denominator: float):
    return float(numerator / denominator) if denominator > 0 else None


def _mean_or_none(values: list) -> float | None:
    defined = [v for v in values if v is not None]
    return float(np.mean(defined)) if defined else None


def compute_metrics(matrix) -> dict:
    """All dataset-wide figures of a confusion matrix (rows = true class, columns = predicted).

    A class that appears in neither the ground truth nor the prediction has no IoU: it is
    reported as None and left out of mIoU. Figures that are undefined for an empty matrix are None.
    """
    m = np.asarray(matrix, dtype=np.float64)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ValueError(f"confusion matrix must be square, got shape {m.shape}")
    true = m.sum(axis=1)
    pred = m.sum(axis=0)
    hits = np.diag(m)
    union = true + pred - hits
    per_class_iou = [_ratio_or_none(hits[i], union[i]) for i in range(len(m))]
    per_class_accuracy = [_ratio_or_none(hits[i], true[i]) for i in range(len(m))]
    total = true.sum()
    weighted = sum(true[i] * iou for i, iou in enumerate(per_class_iou) if iou is not None)
    return {
        "pixel_accuracy": _ratio_or_none(hits.sum(), total),
        "mean_accuracy": _mean_or_none(per_class_accuracy),
        "mean_iou": _mean_or_none(per_class_iou),
        "fw_iou": _ratio_or_none(weighted, total),
        "per_class_iou": per_class_iou,
        "per_class_accuracy": per_class_accuracy,
        "per_class_pixels": [int(v) for v in true],
        "present": [bool(v > 0) for v in union],
        "n_pixels": int(total),
    }


class ConfusionMatrix:
    """A dataset-wide confusion matrix fed once per batch (torchvision's `ConfusionMatrix`).

    >>> cm = ConfusionMatrix(3)
    >>> cm.update([[0, 1], [2, 255]], [[0, 2], [2, 0]])
    >>> round(cm.compute()["pixel_accuracy"], 4)
    0.6667

    Ground-truth pixels equal to `ignore_index` are skipped; any other value outside
    0..n_classes-1, in either array, is a ValueError (it means the labels and the model disagree
    on the number of classes, which a silent drop would hide).
    """

    def __init__(self, n_classes: int, ignore_index: int = IGNORE_INDEX,
                 class_names: list[str] | None = None):
        if int(n_classes) < 1:
            raise ValueError(f"n_classes must be at least 1, got {n_classes}")
        self.n_classes = int(n_classes)
        self.ignore_index = int(ignore_index)
        self.class_names = list(class_names) if class_names is not None else None
        self.matrix = np.zeros((self.n_classes, self.n_classes), dtype=np.int64)

    def update(self, y_true, y_pred) -> None:
        """Add the pixels of one image or batch (integer arrays of any, equal, shape)."""
        self.matrix += _pair_counts(y_true, y_pred, self.n_classes, self.ignore_index)

    def merge(self, other: "ConfusionMatrix") -> "ConfusionMatrix":
        """Add another matrix's counts (from another worker or shard) into this one."""
        if other.n_classes != self.n_classes or other.ignore_index != self.ignore_index:
            raise ValueError(
                f"cannot merge a {other.n_classes}-class matrix (ignore {other.ignore_index}) "
                f"into a {self.n_classes}-class one (ignore {self.ignore_index})")
        self.matrix += other.matrix
        return self

    def reset(self) -> None:
        self.matrix[...] = 0

    def compute(self) -> dict:
        return compute_metrics(self.matrix)

    def __str__(self) -> str:
        names = self.class_names or [f"class {i}" for i in range(self.n_classes)]
        return format_table(self.compute(), names)


class BookMetrics:
    """The book's per-image figures, for comparison with its printed results.

    The book (`FCN.eval` in chapter12-segmentation/fcn-12.3.1.py) scores each test image on its
    own: the IoU of every class whose ground-truth mask is non-empty in that image (classes absent
    from the image's ground truth are skipped even if predicted), averaged over those classes;
    and the fraction of pixels whose predicted one-hot vector equals the true one. Both are then
    averaged over images. Differences from the book: ignored pixels are left out (the book's
    labels have none), pixel accuracy is a fraction in [0, 1] (the book printed percent), and an
    image with no labelled pixel is skipped instead of dividing by zero.
    """

    def __init__(self, n_classes: int, ignore_index: int = IGNORE_INDEX):
        self.n_classes = int(n_classes)
        self.ignore_index = int(ignore_index)
        self.reset()

    def reset(self) -> None:
        self.iou_sum = 0.0
        self.pla_sum = 0.0
        self.n_images = 0
        self.n_skipped = 0

    def update(self, y_true, y_pred) -> None:
        """Score one image: `y_true` and `y_pred` are its label maps (any equal shape)."""
        counts = _pair_counts(y_true, y_pred, self.n_classes, self.ignore_index)
        true = counts.sum(axis=1)
        if true.sum() == 0:
            self.n_skipped += 1
            return
        hits = np.diag(counts)
        union = true + counts.sum(axis=0) - hits
        in_image = true > 0
        self.iou_sum += float(np.mean(hits[in_image] / union[in_image]))
        self.pla_sum += float(hits.sum() / true.sum())
        self.n_images += 1

    def update_batch(self, y_true, y_pred) -> None:
        """Score each image of a batch (the first axis indexes images)."""
        y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
        if len(y_true) != len(y_pred):
            raise ValueError(f"batch sizes differ: {len(y_true)} vs {len(y_pred)}")
        for true, pred in zip(y_true, y_pred):
            self.update(true, pred)

    def merge(self, other: "BookMetrics") -> "BookMetrics":
        self.iou_sum += other.iou_sum
        self.pla_sum += other.pla_sum
        self.n_images += other.n_images
        self.n_skipped += other.n_skipped
        return self

    def compute(self) -> dict:
        if self.n_images == 0:
            return {"book_miou": None, "book_pla": None}
        return {"book_miou": self.iou_sum / self.n_images,
                "book_pla": self.pla_sum / self.n_images}


def _cell(value) -> str:
    return "-" if value is None else f"{value:.4f}"


SUMMARY_LINES = [
    ("pixel_accuracy", "pixel accuracy"), ("mean_accuracy", "mean accuracy"),
    ("mean_iou", "mean IoU"), ("fw_iou", "frequency-weighted IoU"),
    ("book_miou", "book mIoU (per image)"), ("book_pla", "book pixel accuracy (per image)"),
]


def format_table(metrics: dict, class_names: list[str]) -> str:
    """A per-class table (IoU, accuracy, ground-truth pixels) followed by the summary figures.

    Figures are fractions in [0, 1]; "-" marks a value that is undefined (a class absent from
    both the ground truth and the prediction). Book figures are printed when `metrics` has them.
    """
    ious = metrics["per_class_iou"]
    if len(class_names) != len(ious):
        raise ValueError(f"{len(class_names)} class names for {len(ious)} classes")
    accuracies = metrics.get("per_class_accuracy") or [None] * len(ious)
    pixels = metrics.get("per_class_pixels") or [None] * len(ious)
    width = max([len("class")] + [len(str(name)) for name in class_names])
    lines = [f"{'class':<{width}}  {'IoU':>7}  {'acc':>7}  {'pixels':>12}"]
    for name, iou, accuracy, count in zip(class_names, ious, accuracies, pixels):
        count_text = "-" if count is None else str(count)
        lines.append(f"{str(name):<{width}}  {_cell(iou):>7}  {_cell(accuracy):>7}  "
                     f"{count_text:>12}")
    lines.append("")
    label_width = max(len(label) for _, label in SUMMARY_LINES)
    for key, label in SUMMARY_LINES:
        if key in metrics:
            lines.append(f"{label:<{label_width}}  {_cell(metrics[key])}")
    return "\n".join(lines)
