"""Turning images into label maps: batched whole-image prediction, sliding-window (tiled)
prediction with averaged overlaps as in the d2l chapter, and test-time augmentation: flip, or
several scales each with its flip (`ms-flip`, as DeepLab and PSPNet evaluate).

The model already takes any size (it pads to its stride and crops back), so whole-image
prediction needs no resizing. Tiling is for images too large to fit in memory at once.

The inference function is traced once for every batch size, height and width (an input
signature with all three unknown), so a split of many image sizes (VOC) or a short last batch
does not trace the model again; `Predictor.traces` counts the traces. With `fold_bn=True`
the batch norms are folded into their convolutions (`fcn_keras.fold`) in a copy of the
model taken when the Predictor is made: use it for a fixed set of weights (evaluation,
prediction), not for a model still training. `labels` then runs a folded copy without the
output softmax; the copy with it is made when probabilities are first asked for.

`predict_files` is the prediction verb of the facade (`--image-file`, `FCN.predict_files`):
images in, masks and overlays (and a VIA project) out, through the API's `Segmenter`, so the
command line and the Python API predict the same way.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tensorflow as tf

from fcn_keras.runtime import log

DEFAULT_TTA_SCALES = (0.75, 1.0, 1.25)


class Predictor:
    """Wraps a segmentation model with compiled inference functions."""

    def __init__(self, model, tta: str = "none", tile: tuple[int, int] | None = None,
                 overlap: float = 1 / 3, jit: bool = False,
                 scales: tuple[float, ...] = DEFAULT_TTA_SCALES, fold_bn: bool = False):
        self.model = model
        self.tta = tta
        self.scales = tuple(scales) if tta == "ms-flip" else (1.0,)
        self.tile = tile
        self.overlap = overlap
        self.multiple = padding_multiple(model)
        if fold_bn:
            from fcn_keras.fold import fold_batch_norm
            self._network = None   # made on first use: see `network`
            self.labels_network = fold_batch_norm(model, logits=True)
        else:
            self._network = self.labels_network = model
        self.traces = 0
        channels = model.input_shape[-1]
        spec = tf.TensorSpec((None, None, None, channels), tf.float32)
        self._probs = tf.function(self._probabilities, jit_compile=jit, input_signature=[spec])
        self._argmax = tf.function(self._labels, jit_compile=jit, input_signature=[spec])

    @property
    def network(self):
        """The network that gives probabilities: with `fold_bn`, a folded copy made the first
        time probabilities are asked for (TTA, tiling, `probabilities`); labels without them
        (`--evaluate`, prediction) use only `labels_network`, so evaluation folds once."""
        self._make_network()
        return self._network

    def _make_network(self) -> None:
        if self._network is None:
            from fcn_keras.fold import fold_batch_norm
            self._network = fold_batch_norm(self.model)

    def _probabilities(self, images, network=None):
        self.traces += 1    # Python runs only while tracing
        network = self.network if network is None else network
        return tf.cast(network(images, training=False), tf.float32)

    def _labels(self, images):
        """Labels from the folded network without its output softmax (`fold_batch_norm`'s
        `logits`): the argmax of the logits is the argmax of the probabilities."""
        scores = self._probabilities(images, self.labels_network)
        return tf.cast(tf.argmax(scores, axis=-1), tf.uint8)

    def probabilities(self, images) -> np.ndarray:
        """Per-pixel class probabilities for a float32 [0, 1] batch (N, H, W, C)."""
        images = np.asarray(images, np.float32)
        if self.tile is None:
            return self._call(images)
        return np.stack([self._tiled(image) for image in images])

    def _call(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for a batch, with flip or multi-scale + flip TTA when asked: the
        probabilities of every view, resized back to the image, are averaged."""
        height, width = images.shape[1:3]
        total = None
        for scale in self.scales:
            size = (max(1, round(height * scale)), max(1, round(width * scale)))
            view = images if scale == 1.0 else \
                tf.image.resize(images, size, method="bilinear").numpy()
            probs = self._padded_call(view)
            if self.tta in ("flip", "ms-flip"):
                probs = (probs + self._padded_call(view[:, :, ::-1])[:, :, ::-1]) / 2.0
            if scale != 1.0:
                probs = tf.image.resize(probs, (height, width), method="bilinear").numpy()
            total = probs if total is None else total + probs
        return total / len(self.scales)

    def _padded_call(self, images: np.ndarray, function=None) -> np.ndarray:
        """Run `function` (the probabilities by default) on a batch padded to the model's
        stride, and crop the result back."""
        height, width = images.shape[1:3]
        pad_h, pad_w = (-height) % self.multiple, (-width) % self.multiple
        if pad_h or pad_w:
            images = np.pad(images, [(0, 0), (0, pad_h), (0, pad_w), (0, 0)])
        if function is None:   # the network first: made in the trace, its new variables
            self._make_network()   # would make TensorFlow trace the function twice
            function = self._probs
        return function(tf.constant(images)).numpy()[:, :height, :width]

    def labels(self, images) -> np.ndarray:
        """Per-pixel class indices (uint8) for a batch. Without TTA or tiling the argmax runs
        in the inference graph and only uint8 labels come back, instead of float32
        probabilities and numpy's one-thread argmax over them (4 ms per batch of four
        192x256 images; benchmarks/probes-2026-12-03/metrics_cost.txt)."""
        if self.tta == "none" and self.tile is None:
            return self._padded_call(np.asarray(images, np.float32), self._argmax)
        return np.argmax(self.probabilities(images), axis=-1).astype(np.uint8)

    def _tiled(self, image: np.ndarray) -> np.ndarray:
        """Average the probabilities of overlapping windows that together cover the image."""
        height, width = image.shape[:2]
        tile_h, tile_w = min(self.tile[0], height), min(self.tile[1], width)
        total = None
        counts = np.zeros((height, width, 1), np.float32)
        windows = [(top, left) for top in window_starts(height, tile_h, self.overlap)
                   for left in window_starts(width, tile_w, self.overlap)]
        for top, left in windows:
            crop = image[None, top:top + tile_h, left:left + tile_w]
            probs = self._call(crop)[0]
            if total is None:
                total = np.zeros((height, width, probs.shape[-1]), np.float32)
            total[top:top + tile_h, left:left + tile_w] += probs
            counts[top:top + tile_h, left:left + tile_w] += 1
        return total / counts


def predict_files(model, classes, config, target) -> list[Path]:
    """Segment one image or every image of a folder: `<stem>-mask.png`, `<stem>-overlay.png`
    in `--output-dir`, and with `--via-out` the same masks as polygons of a VIA project file.
    Returns the masks written."""
    from fcn_keras.api import Segmenter, image_files_and_root
    c = config
    files, root = image_files_and_root(target)
    segmenter = Segmenter(model, classes, tta=c.tta, tile=c.tile, tta_scales=c.tta_scales,
                          channels=c.channels, fold_bn=c.fold_bn)
    project = segmenter.via_project(root, attribute=c.attribute, tolerance=c.via_tolerance,
                                    min_area=c.via_min_area) if c.via_out else None
    written = [_predict_file(segmenter, path, project, config) for path in files]
    if project is not None:
        project.write(c.via_out)
        log(c, f"VIA project: {c.via_out} (image names relative to {root}; back to masks: "
               f"python utils/generate_gt_segmentation.py -p {root} -j {c.via_out})")
    return written


def _predict_file(segmenter, path: Path, project, config) -> Path:
    """One image's mask and overlay (and its regions added to `project`); the mask's path."""
    from fcn_keras import visualize
    from fcn_keras.io_utils import write_index_png
    from fcn_keras.pipeline import read_rgb
    classes = segmenter.classes
    image = read_rgb(path, config.channels)
    labels = segmenter.predict(image)
    out = Path(config.output_dir)
    mask_path = out / f"{path.stem}-mask.png"
    write_index_png(mask_path, labels, classes.palette())
    visualize.save_rgb(out / f"{path.stem}-overlay.png",
                       visualize.overlay(image, labels, classes.colors))
    regions = f", {project.add(path, labels)} VIA region(s)" if project else ""
    log(config, f"{path}: {mask_path}{regions}")
    return mask_path


def padding_multiple(model) -> int:
    """The stride the model pads its input to (1 if it takes only fixed sizes)."""
    from fcn_keras.layers import PadToMultiple
    for layer in model.layers:
        if isinstance(layer, PadToMultiple):
            return layer.multiple
    return 1


def window_starts(size: int, window: int, overlap: float) -> list[int]:
    """Start offsets of windows of `window` pixels covering `size` with at least `overlap`."""
    if window >= size:
        return [0]
    step = max(1, int(window * (1 - overlap)))
    starts = list(range(0, size - window, step))
    starts.append(size - window)
    return sorted(set(starts))
