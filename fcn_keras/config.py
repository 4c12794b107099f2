"""Command-line options, parsed once into one typed `Config` that the rest of the code receives.

Every flag of the book's `model_utils.parser()` is kept with its meaning (`--backbone` is now a
name instead of a Python function); the rest extend it for FCN-32s/8s, other datasets, training
and evaluation options.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from fcn_keras import presets
from fcn_keras.backbones import BACKBONES
from fcn_keras.errors import ConfigError
from fcn_keras.losses import LOSSES
from fcn_keras.models import ARCHS, CONTEXTS, check_context


@dataclass
class Config:
    # what to do
    train: bool = False
    evaluate: bool = False
    summary: bool = False
    plot: bool = False
    export: str | None = None
    export_size: tuple[int, int] | None = None
    # model
    arch: str = "fcn"
    backbone: str = "resnet"
    backbone_weights: str = "none"
    layers: int = 3
    n: int = 6
    resnet_version: int = 2
    head_filters: int = 256
    pyramid_filters: int = 512
    bn_momentum: float = 0.99
    fast_layers: bool = True
    context: str = "none"
    pyramid_blocks: int = 0
    downsample: int = 1
    height: int = 480
    width: int = 640
    channels: int = 3
    # data
    dataset: str = "drinks"
    data_path: str = "data/drinks"
    data_format: str = "auto"
    train_labels: str = "segmentation_train.json"
    test_labels: str = "segmentation_test.json"
    allow_pickle: bool = False
    val_fraction: float = 0.1
    classes: str | None = None
    attribute: str | None = None
    scale_range: tuple[float, float] = (0.75, 1.25)
    color_jitter: float = 0.0
    # training
    batch_size: int = 4
    epochs: int = 100
    workers: int = 4
    lr: float | None = None
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "book"
    warmup_epochs: int = 0
    loss: str = "ce"
    class_weights: str = "none"
    steps_per_epoch: int | None = None
    strategy: str = "auto"
    sync_bn: bool = False
    worker_timeout: float = 600.0
    resume: bool = False
    tensorboard: bool = False
    seed: int | None = None
    time_limit: float | None = None
    mixed_precision: bool | None = None   # None: auto (where the hardware runs it natively)
    jit: bool = False
    remat: bool = False
    fold_bn: bool = True
    save_dir: str = "weights"
    restore_weights: str | None = None
    # evaluation / prediction
    split: str | None = None
    report: str | None = None
    html: str | None = None
    image_file: str | None = None
    output_dir: str = "prediction"
    tile: tuple[int, int] | None = None
    tta: str = "none"
    tta_scales: tuple[float, ...] = (0.75, 1.0, 1.25)
    worst: int = 8
    # misc
    verbose: int = 1
    debug: bool = False
    preset: str | None = None
    extra: dict = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.height, self.width, self.channels)

    @property
    def weights_name(self) -> str:
        """The book's weights file name: `<backbone>-<layers>layer-<dataset>-best-iou`."""
        return f"{self.backbone_label}-{self.layers}layer-{self.dataset}-best-iou.weights.h5"

    @property
    def backbone_label(self) -> str:
        if self.backbone == "resnet":
            depth = 9 * self.n + 2 if self.resnet_version == 2 else 6 * self.n + 2
            label = f"ResNet{depth}v{self.resnet_version}"
        else:
            label = {"resnet50v2": "ResNet50V2", "vgg16": "VGG16"}[self.backbone]
        return label if self.arch == "fcn" else f"{self.arch}-{label}"

    def model_options(self) -> dict:
        """The keyword arguments of `models.build_model` chosen by these options."""
        return dict(arch=self.arch, channels=self.channels, backbone=self.backbone,
                    layers_=self.layers, resnet_version=self.resnet_version, n=self.n,
                    backbone_weights=self.backbone_weights, head_filters=self.head_filters,
                    pyramid_filters=self.pyramid_filters, bn_momentum=self.bn_momentum,
                    fast_layers=self.fast_layers, context=self.context,
                    pyramid_blocks=self.pyramid_blocks, downsample=self.downsample)

    def replace(self, **changes) -> "Config":
        return dataclasses.replace(self, **changes)


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected HxW such as 512x512, got {text!r}") from None
    if height < 1 or width < 1:
        raise argparse.ArgumentTypeError(f"sizes must be positive, got {text!r}")
    return height, width


def _scales(text) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in (text.split(",") if isinstance(text, str) else text))
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"expected scales such as 0.75,1,1.25, got {text!r}") \
            from None
    if not values or not all(0.25 <= v <= 4 for v in values):
        raise argparse.ArgumentTypeError(f"scales must lie in [0.25, 4], got {text!r}")
    return values


def _scale_range(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX such as 0.5,2.0, got {text!r}") from None
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"need 0 < MIN <= MAX, got {text!r}")
    return low, high


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fcn.py", description="FCN for semantic segmentation (Keras 3)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    book = p.add_argument_group("the book's options (model_utils.parser)")
    book.add_argument("--layers", type=int, default=3,
                      help="number of feature pyramid layers of the FCN head after the backbone")
    book.add_argument("-b", "--batch-size", "--batch_size", dest="batch_size", type=int,
                      default=4, help="global batch size (split over replicas)")
    book.add_argument("--epochs", type=int, default=100, help="number of epochs to train")
    book.add_argument("--workers", type=int, default=4,
                      help="parallel decode calls of the input pipeline (tf.data)")
    book.add_argument("--backbone", choices=BACKBONES, default="resnet",
                      help="backbone network: the book's ResNet, or keras.applications ones")
    book.add_argument("-t", "--train", action="store_true", help="train the model")
    book.add_argument("--summary", action="store_true",
                      help="print the backbone and FCN summaries (and plot them if pydot works)")
    book.add_argument("--save-dir", default="weights", help="folder for weights and history")
    book.add_argument("--dataset", default="drinks", help="dataset name (used in file names)")
    book.add_argument("--height", type=int, default=480, help="input (training crop) height")
    book.add_argument("--width", type=int, default=640, help="input (training crop) width")
    book.add_argument("--channels", type=int, default=3, help="input image channels")
    book.add_argument("--data-path", default="data/drinks", help="path to the dataset folder")
    book.add_argument("--train-labels", default="segmentation_train.json",
                      help="train annotations in --data-path (VIA JSON, or the book's .npy)")
    book.add_argument("--test-labels", default="segmentation_test.json",
                      help="test annotations in --data-path (VIA JSON, or the book's .npy)")
    book.add_argument("--restore-weights", help="weights file to load (.weights.h5, .keras or "
                      "the book's .h5)")
    book.add_argument("-e", "--evaluate", action="store_true", help="evaluate the model")
    book.add_argument("--image-file", help="image file or folder to segment (with --evaluate)")
    book.add_argument("--plot", action="store_true",
                      help="with --evaluate: also write overlays of the worst images")
    book.add_argument("--verbose", type=int, default=1, help="0 quiet, 1 progress, 2 details")

    model = p.add_argument_group("model")
    model.add_argument("--arch", choices=ARCHS, default="fcn",
                       help="fcn: the book's; fcn32s: d2l's; fcn8s: skip fusion; fcn4s: fcn8s "
                       "plus a stride-4 skip")
    model.add_argument("--context", choices=CONTEXTS, default="none",
                       help="aspp: a light atrous spatial pyramid pooling module on the "
                       "stride-32 features (fcn8s/fcn4s)")
    model.add_argument("--n", type=int, default=6,
                       help="ResNet depth parameter: depth 9n+2 (v2) or 6n+2 (v1)")
    model.add_argument("--resnet-version", type=int, choices=(1, 2), default=2)
    model.add_argument("--backbone-weights", default="none",
                       help="none, imagenet (keras.applications backbones; downloads), or a file")
    model.add_argument("--head-filters", type=int, default=256,
                       help="filters of the book's FCN head (the book: 256)")
    model.add_argument("--pyramid-filters", type=int, default=512,
                       help="filters of the book's stride-2 pyramid levels (the book: 512)")
    model.add_argument("--pyramid-blocks", type=int, default=0, metavar="K",
                       help="residual blocks added after each stride-2 pyramid level (the "
                       "book: 0); cheap depth at strides 16 and 32")
    model.add_argument("--downsample", type=int, choices=(1, 2, 4), default=1, metavar="F",
                       help="the network sees the image averaged over FxF blocks and its class "
                       "map is upsampled back: F^2 times less compute per image, for large "
                       "objects on slow machines (1, 2 or 4)")
    model.add_argument("--bn-momentum", type=float, default=0.99,
                       help="batch-norm moving-average momentum (Keras' and the book's 0.99; "
                       "0.9 makes short trainings usable in inference mode much sooner)")
    model.add_argument("--fast-layers", action=argparse.BooleanOptionalAction, default=True,
                       help="compute the 3x3 stride-2 transposed convs (training) as one GEMM "
                       "and a sub-pixel shuffle and batch norms with TensorFlow's fused kernel; "
                       "same weights and results as Keras' own layers, which --no-fast-layers "
                       "uses")

    data = p.add_argument_group("data")
    data.add_argument("--data-format", default="auto",
                      choices=("auto", "via", "folder", "voc", "camvid", "npy", "coco",
                               "labelme", "cvat", "cvat-mask"))
    data.add_argument("--allow-pickle", action="store_true",
                      help="allow reading the book's pickled .npy label dictionaries")
    data.add_argument("--val-fraction", type=float, default=0.1,
                      help="share of train held out as val when the layout has no val split")
    data.add_argument("--classes", help="VIA class names in index order (background is 0)")
    data.add_argument("--attribute", help="VIA region attribute holding the class name")
    data.add_argument("--scale-range", type=_scale_range, default=(0.75, 1.25),
                      help="random scale augmentation range MIN,MAX")
    data.add_argument("--color-jitter", type=float, default=0.0, metavar="S",
                      help="random brightness, contrast and saturation factors in [1-S, 1+S] "
                      "for training images (0: off)")

    train = p.add_argument_group("training")
    train.add_argument("--lr", type=float, default=None,
                       help="initial learning rate (default: 1e-3 adam/adamw, 1e-2 sgd)")
    train.add_argument("--optimizer", choices=("adam", "sgd", "adamw"), default="adam")
    train.add_argument("--weight-decay", type=float, default=0.0)
    train.add_argument("--schedule", choices=("book", "poly", "cosine", "constant"),
                       default="book", help="book: halve after epoch 40, /10 after 60, /20 "
                       "after 80 (lr_scheduler)")
    train.add_argument("--warmup-epochs", type=int, default=0)
    train.add_argument("--loss", choices=LOSSES, default="ce",
                       help="ce: cross-entropy (class-weighted with --class-weights); dice; "
                       "lovasz: Lovász-softmax, a surrogate of the IoU; ce+dice, ce+lovasz: sums")
    train.add_argument("--class-weights", default="none",
                       help="none, median-freq, median-freq-sqrt (its square root: milder), "
                       "or a JSON file with one weight per class")
    train.add_argument("--steps-per-epoch", type=int, default=None)
    train.add_argument("--strategy", choices=("auto", "default", "mirrored", "multiworker"),
                       default="auto", help="auto: multiworker if TF_CONFIG is set, mirrored "
                       "over GPUs when there are any, else the default strategy")
    train.add_argument("--sync-bn", action="store_true",
                       help="synchronised batch norm: all-reduce each BN layer's batch "
                       "statistics across replicas (workers), so that the moving statistics "
                       "are the same everywhere; no effect with one replica")
    train.add_argument("--worker-timeout", type=float, default=600.0, metavar="SECONDS",
                       help="multi-worker: a worker that sees no progress from the others for "
                       "this long (a worker lost or hanging) stops with exit status 75; keep it "
                       "above the chief's validation time")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted run from its last completed epoch")
    train.add_argument("--tensorboard", action="store_true")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--time-limit", type=float, default=None, metavar="MINUTES",
                       help="stop after the last epoch that ends within MINUTES of training "
                       "(judged from the mean epoch time); the best weights are kept")
    train.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
                       help="mixed_bfloat16 compute on CPUs / mixed_float16 on GPUs, float32 "
                       "weights; default: on where the hardware computes it natively (CPU with "
                       "AVX512-BF16 or AMX, GPU of compute capability 7.0+), else off")
    train.add_argument("--jit", action="store_true", help="XLA-compile the train step")
    train.add_argument("--remat", action="store_true",
                       help="recompute the backbone's activations in the backward pass instead "
                       "of keeping them (less memory, one more backbone forward per step; same "
                       "weights file and results)")

    ev = p.add_argument_group("evaluation and prediction")
    ev.add_argument("--split", default=None, help="split to evaluate (default: test, else val)")
    ev.add_argument("--report", help="write the metrics as JSON to this file")
    ev.add_argument("--output-dir", default="prediction",
                    help="folder for predicted masks, overlays and figures")
    ev.add_argument("--tile", type=_size, default=None,
                    help="sliding-window prediction with HxW windows (overlapping)")
    ev.add_argument("--tta", choices=("none", "flip", "ms-flip"), default="none",
                    help="test-time augmentation: flip averages the image and its mirror; "
                    "ms-flip also does so at --tta-scales")
    ev.add_argument("--tta-scales", type=_scales, default=(0.75, 1.0, 1.25),
                    help="image scales for --tta ms-flip, e.g. 0.5,0.75,1,1.25,1.5")
    ev.add_argument("--fold-bn", action=argparse.BooleanOptionalAction, default=True,
                    help="evaluate and predict with the batch norms folded into their "
                    "convolutions (same results to float rounding, faster)")
    ev.add_argument("--worst", type=int, default=8,
                    help="with --plot or --html: the N worst images")
    ev.add_argument("--html", metavar="DIR",
                    help="with --evaluate: one self-contained page DIR/index.html (metrics, "
                    "per-class table and IoU bars, confusion matrix, training curves, worst "
                    "images)")
    ev.add_argument("--export", metavar="DIR",
                    help="export the model (.keras, SavedModel, TFLite float32 and int8; ONNX "
                    "if tf2onnx is installed)")
    ev.add_argument("--export-size", type=_size, metavar="HxW",
                    help="the input size of the TFLite files (default: --height x --width)")
    p.add_argument("--preset", metavar="NAME|FILE",
                   help="a named set of options (shipped: "
                   f"{', '.join(presets.available()) or 'none'}) or a JSON file of them; "
                   "flags given here win over the preset")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def validate(config: Config) -> Config:
    """Reject combinations that cannot work, with a message saying what would."""
    if config.train and config.evaluate:
        pass  # the book allows it: train, then evaluate the best weights
    if not (config.train or config.evaluate or config.summary or config.export):
        raise ConfigError("nothing to do: give --train, --evaluate, --summary or --export")
    if config.html and not config.evaluate:
        raise ConfigError("--html needs --evaluate (it reports an evaluation)")
    if config.image_file and not config.evaluate:
        raise ConfigError("--image-file needs --evaluate (and --restore-weights)")
    if config.evaluate and not config.train and not config.restore_weights:
        raise ConfigError("--evaluate needs --restore-weights FILE (or --train to train first)")
    if config.resume and not config.train:
        raise ConfigError("--resume only applies to --train")
    for name in ("height", "width", "channels", "batch_size", "epochs", "layers", "n",
                 "head_filters", "pyramid_filters"):
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, "
                              f"got {getattr(config, name)}")
    if config.channels not in (1, 3):
        raise ConfigError(f"--channels must be 1 (greyscale) or 3 (RGB), got {config.channels}: "
                          "images are decoded to that many channels")
    if config.channels != 3 and config.backbone != "resnet":
        raise ConfigError(f"--backbone {config.backbone} takes RGB images: use --channels 3")
    check_context(config.arch, config.context)
    if config.pyramid_blocks < 0:
        raise ConfigError(f"--pyramid-blocks must be 0 or more, got {config.pyramid_blocks}")
    if not 0 < config.bn_momentum < 1:
        raise ConfigError(f"--bn-momentum must be in (0, 1), got {config.bn_momentum}")
    if config.time_limit is not None and not config.time_limit > 0:
        raise ConfigError(f"--time-limit must be a positive number of minutes, "
                          f"got {config.time_limit}")
    if not config.worker_timeout > 0:
        raise ConfigError(f"--worker-timeout must be a positive number of seconds, "
                          f"got {config.worker_timeout}")
    if not 0 <= config.color_jitter < 1:
        raise ConfigError(f"--color-jitter must be in [0, 1), got {config.color_jitter}")
    if not 0 <= config.val_fraction < 1:
        raise ConfigError(f"--val-fraction must be in [0, 1), got {config.val_fraction}")
    if config.restore_weights and not Path(config.restore_weights).exists():
        alt = Path(config.save_dir) / config.restore_weights
        if not alt.exists():
            raise ConfigError(f"--restore-weights {config.restore_weights}: file not found "
                              f"(also looked in {alt})")
    return config


def check_training_size(config: Config, stride: int) -> None:
    """Refuse a training crop smaller than the network stride.

    The model pads any input to its stride, so such a crop would run, but the deepest feature
    map would be a single position made mostly of padding: the pyramid levels and the upsampling
    head would learn nothing useful. Evaluation and prediction take any size, so only `--train`
    is checked.
    """
    if not config.train:
        return
    for name in ("height", "width"):
        value = getattr(config, name)
        if value < stride:
            raise ConfigError(
                f"--{name} {value} is smaller than the network stride {stride} (--arch "
                f"{config.arch}, --backbone {config.backbone}, --layers {config.layers}): a "
                f"training crop must be at least {stride}x{stride}; use --{name} {stride} or "
                "more (evaluation and prediction take images of any size)")


def parse_args(argv=None) -> Config:
    """Parse the command line into a validated `Config`.

    Evaluating or predicting with weights that have their model settings beside them
    (`fcn_keras.sidecar`) takes the model options from there."""
    from fcn_keras.sidecar import apply_settings
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)
    given = given_options(argv)
    if known.preset:
        preset = presets.load_preset(known.preset, parser)
        parser.set_defaults(**preset)
        given |= set(preset)
    args = vars(parser.parse_args(argv))
    if args.get("lr") is None:
        args["lr"] = 1e-2 if args["optimizer"] == "sgd" else 1e-3
    return validate(apply_settings(validate(Config(**args)), given))


def given_options(argv) -> set[str]:
    """The Config fields that the command line sets explicitly (not left to a default)."""
    parser = build_parser()
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    known, _ = parser.parse_known_args(argv)
    return set(vars(known))


def resolve_weights_path(config: Config) -> Path:
    """`--restore-weights` as given, or inside `--save-dir` as the book looked for it."""
    path = Path(config.restore_weights)
    return path if path.exists() else Path(config.save_dir) / path
