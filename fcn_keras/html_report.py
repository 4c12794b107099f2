"""One self-contained HTML page per evaluation (`--evaluate --html DIR`): the figures, the
per-class table, the per-class IoU bars, the confusion matrix, the training curves when the
history sits beside the weights, and the worst images as image / ground truth / prediction.

Everything is inside `DIR/index.html` (pictures as data URIs, no script, no network), so the
page can be mailed, attached to an issue or opened years later.
"""

from __future__ import annotations

import base64
import html
import json
from pathlib import Path

from fcn_keras import visualize
from fcn_keras.io_utils import atomic_write_text

STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
.summary td { font-weight: 600; } .note { color: #666; font-size: 0.9em; }
img { max-width: 100%; } .swatch { display: inline-block; width: 0.9em; height: 0.9em;
border: 1px solid #888; vertical-align: middle; margin-right: 0.4em; }
"""

SUMMARY = (("mean_iou", "mIoU"), ("pixel_accuracy", "pixel accuracy"),
           ("mean_accuracy", "mean accuracy"), ("fw_iou", "frequency-weighted IoU"),
           ("book_miou", "book mIoU (per image, the book's metric)"))


def write_html_report(directory, metrics: dict, classes, meta: dict, worst=(),
                      history: list[dict] | None = None) -> Path:
    """Write `directory/index.html` (atomically) and return its path.

    `metrics`: `compute_metrics`' figures; `classes`: names and colours; `meta`: split, weights,
    TTA; `worst`: (mIoU, stem, image, truth, prediction) tuples; `history`: epoch records."""
    names = list(classes.names)
    sections = [
        f"<h1>Evaluation: {esc(meta.get('split', ''))} split, "
        f"{metrics.get('n_images', 0)} images</h1>",
        f"<p class='note'>weights {esc(meta.get('weights', ''))}; test-time augmentation "
        f"{esc(meta.get('tta', 'none'))}</p>",
        summary_table(metrics),
        "<h2>Per class</h2>", class_table(metrics, names, classes.colors),
        "<h2>IoU per class</h2>",
        image_tag(visualize.per_class_iou_png(metrics["per_class_iou"], names), "IoU per class"),
        "<h2>Confusion matrix</h2>",
        image_tag(visualize.confusion_matrix_png(metrics["confusion_matrix"], names),
                  "confusion matrix"),
    ]
    if history:
        sections += ["<h2>Training curves</h2>",
                     image_tag(visualize.history_png(history), "training curves")]
    if worst:
        sections.append(f"<h2>The {len(worst)} worst images (lowest mIoU)</h2>")
        for miou, stem, image, truth, prediction in worst:
            png = visualize.comparison_png(image, truth, prediction, classes.colors,
                                           classes.ignore_index, f"{stem}: mIoU {miou:.3f}")
            sections.append(image_tag(png, f"{stem}: image, ground truth, prediction"))
    page = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>fcn-keras evaluation: {esc(meta.get('split', ''))}</title>"
            f"<style>{STYLE}</style></head><body>\n" + "\n".join(sections) +
            "\n</body></html>\n")
    path = Path(directory) / "index.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, page)
    return path


def summary_table(metrics: dict) -> str:
    rows = "".join(f"<tr><td>{label}</td><td>{number(metrics.get(key))}</td></tr>"
                   for key, label in SUMMARY if key in metrics)
    return f"<table class='summary'>{rows}</table>"


def class_table(metrics: dict, names: list[str], colors) -> str:
    head = "<tr><th>class</th><th>IoU</th><th>accuracy</th><th>pixels</th></tr>"
    rows = []
    for index, name in enumerate(names):
        color = "rgb({},{},{})".format(*colors[index])
        rows.append(
            f"<tr><td><span class='swatch' style='background:{color}'></span>{esc(name)}</td>"
            f"<td>{number(metrics['per_class_iou'][index])}</td>"
            f"<td>{number(metrics['per_class_accuracy'][index])}</td>"
            f"<td>{int(metrics['per_class_pixels'][index]):,}</td></tr>")
    return f"<table>{head}{''.join(rows)}</table>"


def load_history(weights: Path) -> list[dict] | None:
    """The epoch records saved beside `weights` (`<stem>-history.json`), if readable."""
    from fcn_keras.sidecar import beside
    path = beside(weights, "-history.json")
    try:
        records = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return records if isinstance(records, list) and records else None


def image_tag(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f"<p><img alt='{esc(alt)}' src='data:image/png;base64,{data}'></p>"


def number(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def esc(text) -> str:
    return html.escape(str(text), quote=True)
