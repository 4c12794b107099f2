"""Scoring predictions against ground truth over a whole split, and the evaluation report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from fcn_keras.io_utils import atomic_write_text
from fcn_keras.metrics import BookMetrics, ConfusionMatrix


def score_split(predictor, dataset, n_classes: int, ignore_index: int, on_image=None) -> dict:
    """Dataset-wide confusion-matrix metrics plus the book's per-image figures.

    `dataset` yields padded batches of (images, masks); padding in masks is the ignore index, so
    it is excluded. `on_image(index, image, truth, prediction, image_miou)` is called per image
    (for the worst-images overlays) when given.
    """
    matrix = ConfusionMatrix(n_classes, ignore_index)
    book = BookMetrics(n_classes, ignore_index)
    index = 0
    for images, masks in dataset:
        images = images.numpy()
        truths = masks.numpy()[..., 0]
        predictions = predictor.labels(images)
        matrix.update(truths, predictions)
        for image, truth, prediction in zip(images, truths, predictions):
            book.update(truth, prediction)
            if on_image is not None:
                single = ConfusionMatrix(n_classes, ignore_index)
                single.update(truth, prediction)
                on_image(index, image, truth, prediction, single.compute()["mean_iou"])
            index += 1
    metrics = matrix.compute()
    metrics.update(book.compute())
    metrics["confusion_matrix"] = matrix.matrix.tolist()
    metrics["n_images"] = index
    return metrics


def write_report(path, metrics: dict, class_names, extra: dict | None = None) -> None:
    """The JSON report (DESIGN.md keys), written atomically."""
    report = {key: metrics[key] for key in ("pixel_accuracy", "mean_accuracy", "mean_iou",
                                            "fw_iou", "per_class_iou", "book_miou", "book_pla")}
    report["per_class_iou_by_name"] = dict(zip(class_names, metrics["per_class_iou"]))
    report["per_class_accuracy"] = metrics.get("per_class_accuracy")
    report["class_names"] = list(class_names)
    report["n_images"] = metrics.get("n_images")
    report["confusion_matrix"] = metrics.get("confusion_matrix")
    report.update(extra or {})
    atomic_write_text(Path(path), json.dumps(report, indent=2) + "\n")


class WorstImages:
    """Keeps the N images with the lowest mIoU for the `--plot` overlays."""

    def __init__(self, n: int):
        self.n = n
        self.items: list[tuple[float, int, np.ndarray, np.ndarray, np.ndarray]] = []

    def __call__(self, index, image, truth, prediction, miou):
        if self.n <= 0:
            return
        self.items.append((miou, index, image, truth, prediction))
        self.items.sort(key=lambda item: item[0])
        del self.items[self.n:]
