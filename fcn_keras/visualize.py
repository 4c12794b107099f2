"""Pictures: colour masks, overlays, the confusion-matrix figure and training curves.

Matplotlib runs with the Agg backend (no screen needed); every figure is written atomically.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from fcn_keras.classes import IGNORE_INDEX
from fcn_keras.io_utils import atomic_path


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def colorize(mask: np.ndarray, colors, ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Index mask -> RGB image with the class colours (ignored pixels white)."""
    table = np.full((256, 3), 255, np.uint8)
    table[:len(colors)] = np.asarray(colors, np.uint8)
    if ignore_index < len(colors):
        table[ignore_index] = (255, 255, 255)
    return table[np.asarray(mask, np.uint8)]


def overlay(image: np.ndarray, mask: np.ndarray, colors, alpha: float = 0.5,
            ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """Blend the colour mask over the image; background (class 0) is left untouched."""
    image = np.asarray(image)
    if image.dtype != np.uint8:
        image = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    color = colorize(mask, colors, ignore_index).astype(np.float32)
    blend = image.astype(np.float32) * (1 - alpha) + color * alpha
    keep = (np.asarray(mask) == 0)[..., None]
    return np.where(keep, image, blend).astype(np.uint8)


def save_rgb(path, array: np.ndarray) -> None:
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(np.asarray(array, np.uint8)).save(tmp, format="PNG")


def save_comparison(path, image, truth, prediction, colors, ignore_index, title="") -> None:
    """Image | ground truth | prediction, side by side, for a visual check."""
    save_png(path, comparison_png(image, truth, prediction, colors, ignore_index, title))


def comparison_png(image, truth, prediction, colors, ignore_index, title="") -> bytes:
    """`save_comparison`'s figure as PNG bytes."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(12, 4))
    panels = (image, colorize(truth, colors, ignore_index),
              overlay(image, prediction, colors, 0.6, ignore_index))
    for axis, panel, name in zip(axes, panels, ("image", "ground truth", "prediction")):
        axis.imshow(panel)
        axis.set_title(name)
        axis.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    return figure_png(fig, dpi=80)


def save_confusion_matrix(path, matrix: np.ndarray, names) -> None:
    """Row-normalised confusion matrix (rows: truth) with the class names."""
    save_png(path, confusion_matrix_png(matrix, names))


def confusion_matrix_png(matrix: np.ndarray, names) -> bytes:
    """`save_confusion_matrix`'s figure as PNG bytes."""
    plt = _pyplot()
    matrix = np.asarray(matrix, np.float64)
    rows = matrix.sum(axis=1, keepdims=True)
    norm = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
    size = max(4.0, 0.5 * len(names) + 2)
    fig, axis = plt.subplots(figsize=(size + 1, size))
    shown = axis.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    axis.set_xticks(range(len(names)), names, rotation=45, ha="right")
    axis.set_yticks(range(len(names)), names)
    axis.set_xlabel("predicted")
    axis.set_ylabel("true")
    if len(names) <= 25:
        for i in range(len(names)):
            for j in range(len(names)):
                axis.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                          color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(shown, ax=axis, fraction=0.046)
    axis.set_title("confusion matrix (row-normalised)")
    fig.tight_layout()
    return figure_png(fig)


def plot_history(records: list[dict], path) -> None:
    """Loss, validation mIoU and pixel accuracy per epoch."""
    save_png(path, history_png(records))


def history_png(records: list[dict]) -> bytes:
    """`plot_history`'s figure as PNG bytes."""
    plt = _pyplot()
    epochs = [r["epoch"] + 1 for r in records]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for axis, key, title in zip(axes, ("loss", "val_mean_iou", "val_pixel_accuracy"),
                                ("training loss", "validation mIoU", "validation pixel accuracy")):
        axis.plot(epochs, [r.get(key, np.nan) for r in records], marker="o", markersize=3)
        if key == "val_mean_iou" and any("val_book_miou" in r for r in records):
            axis.plot(epochs, [r.get("val_book_miou", np.nan) for r in records],
                      linestyle="--", label="book mIoU (per image)")
            axis.legend()
        axis.set_title(title)
        axis.set_xlabel("epoch")
        axis.grid(alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


def per_class_iou_png(per_class_iou: list, names) -> bytes:
    """Horizontal bars of each class's IoU (classes without one, absent everywhere, left empty)."""
    plt = _pyplot()
    values = [np.nan if v is None else v for v in per_class_iou]
    fig, axis = plt.subplots(figsize=(7, 0.35 * len(names) + 1.2))
    axis.barh(range(len(names)), values, color="#3b75af")
    axis.set_yticks(range(len(names)), names)
    axis.invert_yaxis()
    axis.set_xlim(0, 1)
    axis.set_xlabel("IoU")
    for index, value in enumerate(values):
        if not np.isnan(value):
            axis.text(min(value + 0.01, 0.93), index, f"{value:.3f}", va="center", fontsize=8)
    axis.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    return figure_png(fig)


def figure_png(fig, dpi: int = 90) -> bytes:
    """Render a Matplotlib figure to PNG bytes and close it."""
    import io
    plt = _pyplot()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def save_png(path, data: bytes) -> None:
    """Write PNG bytes atomically."""
    with atomic_path(Path(path), suffix=".png") as tmp:
        Path(tmp).write_bytes(data)
