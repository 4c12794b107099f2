"""The evaluation verb (`--evaluate`, the facade's `FCN.evaluate`): scoring predictions against
ground truth over a whole split, and what it writes: the table, the JSON report, the confusion
matrix and, with `--plot` / `--html`, the worst images.

Scoring (`score_split`) is shared with validation during training; the rest is here so that
the facade only chooses the split and the weights.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from fcn_keras import visualize
from fcn_keras.io_utils import atomic_write_text
from fcn_keras.metrics import BookMetrics, ConfusionMatrix, format_table


def default_split(config, dataset) -> str:
    """`--split`, else `test` when the dataset has test images, else `val`."""
    return config.split or ("test" if "test" in dataset.splits and dataset.splits["test"]
                            else "val")


def evaluate(model, classes, generator, split: str, config, weights) -> dict:
    """Metrics of `model` on `generator`'s split (`--tta`, `--tile`, `--fold-bn` as asked),
    printed as a table and written with the figures; `weights`: the file scored, for the HTML
    report's history."""
    from fcn_keras.predict import Predictor
    c = config
    predictor = Predictor(model, tta=c.tta, tile=c.tile, scales=c.tta_scales, fold_bn=c.fold_bn)
    worst = WorstImages(c.worst if c.plot or c.html else 0)
    start = time.time()
    metrics = score_split(predictor, generator.dataset(), classes.n_classes,
                          classes.ignore_index, worst)
    seconds = time.time() - start
    print(f"\n{split} split, {metrics['n_images']} images ({seconds:.1f} s):")
    print(format_table(metrics, classes.names))
    write_outputs(metrics, split, classes, config)
    if c.plot:
        save_worst(worst, generator.samples, classes, Path(c.output_dir))
    if c.html:
        write_html(metrics, split, generator.samples, worst, classes, config, weights)
    return metrics


def write_outputs(metrics: dict, split: str, classes, config) -> None:
    """The JSON report (`--report`, else `report-<split>.json`) and the confusion matrix."""
    c = config
    out = Path(c.output_dir)
    report = Path(c.report) if c.report else out / f"report-{split}.json"
    write_report(report, metrics, classes.names,
                 {"split": split, "weights": str(c.restore_weights), "arch": c.arch,
                  "tta": c.tta, "tta_scales": list(c.tta_scales)})
    figure = out / f"confusion-{split}.png"
    visualize.save_confusion_matrix(figure, np.array(metrics["confusion_matrix"]),
                                    classes.names)
    print(f"Report: {report}; confusion matrix: {figure}")


def save_worst(worst, samples, classes, out: Path) -> None:
    """`--plot`: image / ground truth / prediction of the worst images, worst first."""
    for rank, (miou, index, image, truth, prediction) in enumerate(worst.items):
        stem = samples[index].stem
        visualize.save_comparison(out / f"worst-{rank + 1:02d}-{stem}.png", image, truth,
                                  prediction, classes.colors, classes.ignore_index,
                                  f"{stem}: mIoU {miou:.3f}")
    if worst.items:
        print(f"Overlays of the {len(worst.items)} worst images in {out}")


def write_html(metrics, split, samples, worst, classes, config, weights) -> None:
    """`--html`: the one-page report with the training curves saved beside `weights`."""
    from fcn_keras.html_report import load_history, write_html_report
    items = [(miou, samples[index].stem, image, truth, prediction)
             for miou, index, image, truth, prediction in worst.items]
    page = write_html_report(config.html, metrics, classes,
                             {"split": split, "weights": weights, "tta": config.tta}, items,
                             load_history(weights))
    print(f"HTML report: {page}")


# Batches decoded ahead of the model, in bytes (`score_split`): a 360x480 image is 2 MB as float32.
DECODE_AHEAD_BYTES = 256 * 2 ** 20


def score_split(predictor, dataset, n_classes: int, ignore_index: int, on_image=None,
                decode_ahead: int = DECODE_AHEAD_BYTES) -> dict:
    """Dataset-wide confusion-matrix metrics plus the book's per-image figures.

    `dataset` yields padded batches of (images, masks); padding in masks is the ignore index, so
    it is excluded. `on_image(index, image, truth, prediction, image_miou)` is called per image
    (for the worst-images overlays) when given. The batches are read `decode_ahead` bytes at a
    time before the model sees them (0: one at a time, as they come).
    """
    matrix = ConfusionMatrix(n_classes, ignore_index)
    book = BookMetrics(n_classes, ignore_index)
    index = 0
    for images, truths in decoded_ahead(dataset, decode_ahead):
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


def decoded_ahead(dataset, budget: int):
    """(images, masks) numpy batches of `dataset`, read `budget` bytes at a time before any is
    handed on. Why: with the input pipeline decoding beside the model, evaluation passes fell
    into a slow mode (most passes at about 2/3 of the fastest one), and with the split decoded
    before the passes none did (`benchmarks/eval_modes.py`, benchmarks/README.md round 3).
    Reading in chunks keeps that while holding at most `budget` bytes (plus one batch)."""
    chunk, size = [], 0
    for images, masks in dataset:
        batch = (np.asarray(images), np.asarray(masks)[..., 0])
        if budget <= 0:
            yield batch
            continue
        chunk.append(batch)
        size += batch[0].nbytes + batch[1].nbytes
        if size >= budget:
            yield from _emptied(chunk)
            size = 0
    yield from _emptied(chunk)


def _emptied(chunk: list):
    """The items of `chunk` in order, each dropped from it as it is handed on."""
    chunk.reverse()
    while chunk:
        yield chunk.pop()


def write_report(path, metrics: dict, class_names, extra: dict | None = None) -> None:
    """The JSON report, written atomically.

    Keys: `pixel_accuracy`, `mean_accuracy`, `mean_iou`, `fw_iou`, `per_class_iou` (a list in
    class order), `book_miou`, `book_pla` (the book's per-image figures), `per_class_iou_by_name`,
    `per_class_accuracy`, `class_names`, `n_images`, `confusion_matrix` (rows: true class,
    columns: predicted), then whatever `extra` adds (`write_outputs` adds `split`, `weights`,
    `arch`, `tta`, `tta_scales`).
    """
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
