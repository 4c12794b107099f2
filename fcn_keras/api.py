"""The Python API: a trained model that segments images, loaded from its weights or a preset.

    from fcn_keras import Segmenter

    segmenter = Segmenter.from_preset("camvid")                  # the shipped CamVid weights
    segmenter = Segmenter.from_weights("runs/x-best-iou.weights.h5", tta="flip")
    mask = segmenter.predict("photo.jpg")                        # (H, W) uint8 class indices
    masks = segmenter.predict([array_a, pil_image_b])            # a list, one mask per image
    probs = segmenter.predict(batch, probabilities=True)         # (N, H, W, classes) float32
    segmenter.to_via("new_photos/", "new_photos/predicted.json") # polygons to correct in VIA

Weights trained by fcn-keras carry their model settings (`<stem>.model.json`) and classes
(`<stem>.classes.json`), so loading needs no model options, offline. `predict` takes what a
user has at hand: a path, a PIL image, an (H, W, 3) uint8 or [0, 1] float array, a list of
those (any sizes), or an (N, H, W, 3) batch; tiling and test-time augmentation are the CLI's
(`--tile`, `--tta`), and the CLI's `--image-file` (and `--via-out`) runs through this class.
`to_via` writes the predictions as a VIA 2.x project (`fcn_keras.annotations.via_writer`), so
that annotating new photos starts from the model's polygons.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fcn_keras.errors import ConfigError, DataError
from fcn_keras.io_utils import IMAGE_SUFFIXES

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"


class Segmenter:
    """A segmentation model with its classes and inference options (tiling, TTA).

    `fold_bn=True` predicts with the batch norms folded into their convolutions (faster, the
    same probabilities to float rounding; the fold copies the weights as they are now, so
    set it only for a model that is not trained further). The CLI's `--image-file` does so.
    """

    def __init__(self, model, classes, tta: str = "none", tile: tuple[int, int] | None = None,
                 tta_scales=None, channels: int = 3, fold_bn: bool = False):
        from fcn_keras.predict import DEFAULT_TTA_SCALES, Predictor
        self.model = model
        self.classes = classes
        self.channels = channels
        self.predictor = Predictor(model, tta=tta, tile=tile,
                                   scales=tuple(tta_scales or DEFAULT_TTA_SCALES),
                                   fold_bn=fold_bn)

    # loading ---------------------------------------------------------------------------------
    @classmethod
    def from_weights(cls, weights, preset: str | None = None, **options) -> "Segmenter":
        """Load a `.weights.h5` / `.keras` file; its model settings and classes come from the
        files beside it (else from `preset`, else the defaults). `options`: `tta`, `tile`,
        `tta_scales`."""
        from fcn_keras.config import parse_args
        weights = Path(weights)
        argv = ["--evaluate", "--restore-weights", str(weights), "--verbose", "0"]
        config = parse_args(argv + (["--preset", preset] if preset else []))
        return cls.from_config(config, **options)

    @classmethod
    def from_preset(cls, name: str, weights_dir=WEIGHTS_DIR, **options) -> "Segmenter":
        """The shipped weights of a preset (`camvid`, `camvid-fcn8s`, `quick` = the drinks
        main job) from `weights_dir`, with the preset's evaluation options (e.g. flip TTA)."""
        from fcn_keras.config import parse_args
        config = parse_args(["--summary", "--preset", name, "--verbose", "0"])
        path = Path(weights_dir) / config.weights_name
        if not path.is_file():
            raise ConfigError(f"preset {name!r}: its weights {path} are not here (they ship "
                              "in the repository's weights/ folder; pass weights_dir=...)")
        options.setdefault("tta", config.tta)
        return cls.from_weights(path, preset=name, **options)

    @classmethod
    def from_config(cls, config, **options) -> "Segmenter":
        """Build the model `config` describes and load `config.restore_weights` into it."""
        from fcn_keras.classes import ClassInfo
        from fcn_keras.config import resolve_weights_path
        from fcn_keras.models import build_model
        from fcn_keras.restore import load_weights
        from fcn_keras.runtime import configure_runtime
        from fcn_keras.sidecar import beside
        configure_runtime(config.replace(seed=None))   # precision only: no global seeding
        path = resolve_weights_path(config)
        classes_file = beside(path, ".classes.json")
        if not classes_file.is_file():
            raise ConfigError(f"{path}: no classes file beside it ({classes_file.name}); "
                              "give the classes with Segmenter(model, ClassInfo(...))")
        classes = ClassInfo.load(classes_file)
        model, _ = build_model(n_classes=classes.n_classes, **config.model_options())
        load_weights(model, path, config)
        options = {"tta": config.tta, "tile": config.tile, "tta_scales": config.tta_scales,
                   **options}
        return cls(model, classes, channels=config.channels, **options)

    # prediction ------------------------------------------------------------------------------
    def predict(self, images, probabilities: bool = False):
        """Class-index masks (uint8) or, with `probabilities=True`, per-pixel probabilities
        (float32) of one image, a list of images, or an (N, H, W, C) batch; one result per
        image, in the form the input came in (one array, a list, or a stacked batch)."""
        if isinstance(images, np.ndarray) and images.ndim == 4:
            return self._predict_batch(as_float(images, "batch"), probabilities)
        if isinstance(images, (list, tuple)):
            return [self.predict(image, probabilities) for image in images]
        return self._predict_batch(self.load_image(images)[None], probabilities)[0]

    def _predict_batch(self, batch: np.ndarray, probabilities: bool) -> np.ndarray:
        if batch.shape[-1] != self.channels:
            raise DataError(f"images have {batch.shape[-1]} channels; the model takes "
                            f"{self.channels}")
        if probabilities:
            return self.predictor.probabilities(batch)
        return self.predictor.labels(batch)

    # predictions back to VIA -----------------------------------------------------------------
    def via_project(self, root, **options):
        """An empty `ViaProject` for this model's classes, image names relative to `root`;
        `options`: `attribute`, `tolerance`, `min_area` (see `via_writer`). The CLI fills one
        with the masks it predicts for its PNGs, so nothing is predicted twice."""
        from fcn_keras.annotations.via_writer import ViaProject
        return ViaProject(root, self.classes, **options)

    def to_via(self, images, path, **options) -> Path:
        """Segment `images` (an image file, a folder of images, or a list of image files) and
        write the masks as polygons of a VIA 2.x project file `path` (atomically). Image names
        in the file are relative to the folder (a single file's or the list's common folder):
        give that folder to VIA and to the converter (`-p`). Returns `path`."""
        files, root = image_files_and_root(images)
        project = self.via_project(root, **options)
        for file in files:
            project.add(file, self.predict(file))
        return project.write(path)

    def load_image(self, image) -> np.ndarray:
        """One image as an (H, W, C) float32 array in [0, 1], from a path, PIL image or array."""
        if isinstance(image, (str, Path)):
            from fcn_keras.pipeline import read_rgb
            return read_rgb(Path(image), self.channels).astype(np.float32) / 255.0
        if hasattr(image, "convert") and hasattr(image, "size"):   # a PIL image
            mode = "L" if self.channels == 1 else "RGB"
            array = np.asarray(image.convert(mode))
            return as_float(array[..., None] if array.ndim == 2 else array, "image")
        array = np.asarray(image)
        if array.ndim == 2 and self.channels == 1:
            array = array[..., None]
        if array.ndim != 3:
            raise DataError(f"an image must be (height, width, channels); got shape "
                            f"{array.shape}")
        return as_float(array, "image")


def as_float(array: np.ndarray, what: str) -> np.ndarray:
    """uint8 pixels -> [0, 1] float32; float arrays are taken as already in [0, 1]."""
    array = np.asarray(array)
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if not np.issubdtype(array.dtype, np.floating):
        raise DataError(f"{what}: pixels must be uint8 (0..255) or float in [0, 1], got "
                        f"{array.dtype}")
    array = array.astype(np.float32)
    if array.size and (array.min() < -1e-3 or array.max() > 1 + 1e-3):
        raise DataError(f"{what}: float pixels must be in [0, 1] (got {array.min():.3g}.."
                        f"{array.max():.3g}); pass uint8 for 0..255 values")
    return array


def image_files(target) -> list[Path]:
    """The image or the folder's images, each checked (cheaply) before anything is written."""
    from fcn_keras.io_utils import check_image
    path = Path(target)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise DataError(f"{path}: no images (.jpg, .png, ...) in this folder")
    elif not path.exists():
        raise DataError(f"{path}: image file not found")
    else:
        files = [path]
    for file in files:
        check_image(file)
    return files


def image_files_and_root(images) -> tuple[list[Path], Path]:
    """(image files, the folder their names are taken relative to) of a folder, one image file
    or a list of image files."""
    import os
    if isinstance(images, (str, Path)):
        files = image_files(images)
        return files, Path(images) if Path(images).is_dir() else Path(images).parent
    files = [file for image in images for file in image_files(image)]
    if not files:
        raise DataError("no images given")
    return files, Path(os.path.commonpath([os.path.abspath(f.parent) for f in files]))
