"""Command-line options, parsed once into one typed `Config` that the rest of the code receives.

Every flag of the book's `model_utils.parser()` is kept with its meaning (`--backbone` is now a
name instead of a Python function); the rest extend it for FCN-32s/8s, other datasets, training
and evaluation options.

Adding an option: a field of `Config` with its default, and its flag (help, type, choices, no
default) in `build_parser`; the parser takes every default from `Config`, and refuses a flag
without a field or with a default of its own. Nothing here imports TensorFlow, so
`python fcn.py --help` answers at once.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from fcn_keras import presets
from fcn_keras.choices import ARCHS, BACKBONES, CONTEXTS, LOSSES, check_context
from fcn_keras.errors import ConfigError


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
    workers: int | None = None   # None: tf.data.AUTOTUNE
    lr: float | None = None
    optimizer: str = "adam"
    weight_decay: float = 0.0
    schedule: str = "book"
    warmup_epochs: int = 0
    ema: float = 0.0
    recalibrate_bn: bool = False
    loss: str = "ce"
    class_weights: str = "none"
    steps_per_epoch: int | None = None
    strategy: str = "auto"
    sync_bn: bool = False
    worker_timeout: float = 600.0
    resume: bool = False
    init_weights: str | None = None
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
    via_out: str | None = None
    via_tolerance: float = 1.0
    via_min_area: int = 16
    # misc
    verbose: int = 1
    debug: bool = False
    preset: str | None = None
    # Derived, not a flag: training without --height/--width, so the crop follows the data.
    auto_crop: bool = field(default=False, metadata={"derived": True})

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
        """The keyword arguments of `models.build_model` chosen by these options.
        `--backbone-weights` starts a training; evaluating, predicting or exporting load the
        whole model's weights, so there the backbone's file is neither read nor needed."""
        return dict(arch=self.arch, channels=self.channels, backbone=self.backbone,
                    layers_=self.layers, resnet_version=self.resnet_version, n=self.n,
                    backbone_weights=self.backbone_weights if self.train else "none",
                    head_filters=self.head_filters,
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
        raise argparse.ArgumentTypeError(f"expected MIN,MAX such as 0.5,2.0, got {text!r}") \
            from None
    if not 0 < low <= high:
        raise argparse.ArgumentTypeError(f"need 0 < MIN <= MAX, got {text!r}")
    return low, high


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fcn.py", description="FCN for semantic segmentation (Keras 3)",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    book = p.add_argument_group("the book's options (model_utils.parser)")
    book.add_argument("--layers", type=int,
                      help="number of feature pyramid layers of the FCN head after the backbone")
    book.add_argument("-b", "--batch-size", "--batch_size", dest="batch_size", type=int,
                      help="global batch size (split over replicas)")
    book.add_argument("--epochs", type=int, help="number of epochs to train")
    book.add_argument("--workers", type=int, metavar="N",
                      help="parallel calls of the input pipeline's decoding and augmentation "
                      "(tf.data num_parallel_calls; unset: tf.data.AUTOTUNE)")
    book.add_argument("--backbone", choices=BACKBONES,
                      help="backbone network: the book's ResNet, or keras.applications ones")
    book.add_argument("-t", "--train", action="store_true", help="train the model")
    book.add_argument("--summary", action="store_true",
                      help="print the backbone and FCN summaries (and plot them if pydot works)")
    book.add_argument("--save-dir", help="folder for weights and history")
    book.add_argument("--dataset", help="dataset name (used in file names)")
    book.add_argument("--height", type=int,
                      help="input (training crop) height; when neither --height nor --width is "
                      "given, training fits the crop to the median training image, rounded up "
                      "to the network stride and at most 480x640")
    book.add_argument("--width", type=int, help="input (training crop) width")
    book.add_argument("--channels", type=int, help="input image channels")
    book.add_argument("--data-path", help="path to the dataset folder")
    book.add_argument("--train-labels",
                      help="train annotations in --data-path (VIA JSON, or the book's .npy)")
    book.add_argument("--test-labels",
                      help="test annotations in --data-path (VIA JSON, or the book's .npy)")
    book.add_argument("--restore-weights", help="weights file to load (.weights.h5, .keras or "
                      "the book's .h5)")
    book.add_argument("-e", "--evaluate", action="store_true", help="evaluate the model")
    book.add_argument("--image-file", help="image file or folder to segment (with "
                      "--restore-weights; --evaluate is implied)")
    book.add_argument("--plot", action="store_true",
                      help="with --evaluate: also write overlays of the worst images")
    book.add_argument("--verbose", type=int, help="0 quiet, 1 progress, 2 details")

    model = p.add_argument_group("model")
    model.add_argument("--arch", choices=ARCHS,
                       help="fcn: the book's; fcn32s: d2l's; fcn8s: skip fusion; fcn4s: fcn8s "
                       "plus a stride-4 skip")
    model.add_argument("--context", choices=CONTEXTS,
                       help="aspp: a light atrous spatial pyramid pooling module on the "
                       "stride-32 features (fcn8s/fcn4s)")
    model.add_argument("--n", type=int,
                       help="ResNet depth parameter: depth 9n+2 (v2) or 6n+2 (v1)")
    model.add_argument("--resnet-version", type=int, choices=(1, 2))
    model.add_argument("--backbone-weights",
                       help="none, imagenet (keras.applications backbones; downloads), or a file")
    model.add_argument("--head-filters", type=int,
                       help="filters of the book's FCN head (the book: 256)")
    model.add_argument("--pyramid-filters", type=int,
                       help="filters of the book's stride-2 pyramid levels (the book: 512)")
    model.add_argument("--pyramid-blocks", type=int, metavar="K",
                       help="residual blocks added after each stride-2 pyramid level (the "
                       "book: 0); cheap depth at strides 16 and 32")
    model.add_argument("--downsample", type=int, choices=(1, 2, 4), metavar="F",
                       help="the network sees the image averaged over FxF blocks and its class "
                       "map is upsampled back: F^2 times less compute per image, for large "
                       "objects on slow machines (1, 2 or 4)")
    model.add_argument("--bn-momentum", type=float,
                       help="batch-norm moving-average momentum (Keras' and the book's 0.99; "
                       "0.9 makes short trainings usable in inference mode much sooner)")
    model.add_argument("--fast-layers", action=argparse.BooleanOptionalAction,
                       help="compute the 3x3 stride-2 transposed convs (training) as one GEMM "
                       "and a sub-pixel shuffle (not in bfloat16 on CPUs with AMX, where "
                       "TensorFlow's own op is faster) and batch norms with TensorFlow's fused "
                       "kernel; "
                       "same weights and results as Keras' own layers, which --no-fast-layers "
                       "uses")

    data = p.add_argument_group("data")
    data.add_argument("--data-format",
                      choices=("auto", "via", "folder", "voc", "camvid", "npy", "coco",
                               "labelme", "cvat", "cvat-mask"))
    data.add_argument("--allow-pickle", action="store_true",
                      help="allow reading the book's pickled .npy label dictionaries")
    data.add_argument("--val-fraction", type=float,
                      help="share of train held out as val when the layout has no val split")
    data.add_argument("--classes", help="VIA class names in index order (background is 0)")
    data.add_argument("--attribute", help="VIA region attribute holding the class name")
    data.add_argument("--scale-range", type=_scale_range,
                      help="random scale augmentation range MIN,MAX")
    data.add_argument("--color-jitter", type=float, metavar="S",
                      help="random brightness, contrast and saturation factors in [1-S, 1+S] "
                      "for training images (0: off)")

    train = p.add_argument_group("training")
    train.add_argument("--lr", type=float,
                       help="initial learning rate (default: 1e-3 adam/adamw, 1e-2 sgd)")
    train.add_argument("--optimizer", choices=("adam", "sgd", "adamw"))
    train.add_argument("--weight-decay", type=float)
    train.add_argument("--schedule", choices=("book", "poly", "cosine", "constant"),
                       help="book: halve after epoch 40, /10 after 60, /20 "
                       "after 80 (lr_scheduler)")
    train.add_argument("--warmup-epochs", type=int)
    train.add_argument("--ema", type=float, metavar="MOMENTUM",
                       help="keep an exponential moving average of the weights (Polyak "
                       "averaging, e.g. 0.99 per step): validation, the best-weights file and "
                       "the end of training use the averaged weights; 0: off")
    train.add_argument("--recalibrate-bn", action=argparse.BooleanOptionalAction,
                       help="after training, recompute the batch norms' statistics of the best "
                       "weights over the training split's whole images, as evaluation feeds "
                       "them (precise BN); kept if val mIoU does not fall "
                       "(fcn_keras/recalibrate.py)")
    train.add_argument("--loss", choices=LOSSES,
                       help="ce: cross-entropy (class-weighted with --class-weights); dice; "
                       "lovasz: Lovász-softmax, a surrogate of the IoU; ce+dice, ce+lovasz: sums")
    train.add_argument("--class-weights",
                       help="none, median-freq, median-freq-sqrt (its square root: milder), "
                       "or a JSON file with one weight per class")
    train.add_argument("--steps-per-epoch", type=int)
    train.add_argument("--strategy", choices=("auto", "default", "mirrored", "multiworker"),
                       help="auto: multiworker if TF_CONFIG is set, mirrored "
                       "over GPUs when there are any, else the default strategy")
    train.add_argument("--sync-bn", action="store_true",
                       help="synchronised batch norm: all-reduce each BN layer's batch "
                       "statistics across replicas (workers), so that the moving statistics "
                       "are the same everywhere; no effect with one replica")
    train.add_argument("--worker-timeout", type=float, metavar="SECONDS",
                       help="multi-worker: a worker that sees no progress from the others for "
                       "this long (a worker lost or hanging) stops with exit status 75; keep it "
                       "above the chief's validation time")
    train.add_argument("--resume", action="store_true",
                       help="continue an interrupted run from its last completed epoch")
    train.add_argument("--init-weights", metavar="FILE",
                       help="start from another model's weights (e.g. the shipped CamVid "
                       "model for your own photos) of the same model settings: every layer "
                       "whose weight shapes agree is loaded, the others (the class scores) "
                       "start fresh; none: from scratch; ignored with --resume")
    train.add_argument("--tensorboard", action="store_true")
    train.add_argument("--seed", type=int)
    train.add_argument("--time-limit", type=float, metavar="MINUTES",
                       help="stop after the last epoch that ends within MINUTES of training "
                       "(judged from the mean epoch time); the best weights are kept")
    train.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction,
                       help="mixed_bfloat16 compute on CPUs / mixed_float16 on GPUs, float32 "
                       "weights; default: on where the hardware computes it natively (CPU with "
                       "AVX512-BF16 or AMX, GPU of compute capability 7.0+), else off")
    train.add_argument("--jit", action="store_true", help="XLA-compile the train step")
    train.add_argument("--remat", action="store_true",
                       help="recompute the backbone's activations in the backward pass instead "
                       "of keeping them (less memory, one more backbone forward per step; same "
                       "weights file and results)")

    ev = p.add_argument_group("evaluation and prediction")
    ev.add_argument("--split", help="split to evaluate (default: test, else val)")
    ev.add_argument("--report", help="write the metrics as JSON to this file")
    ev.add_argument("--output-dir",
                    help="folder for predicted masks, overlays and figures")
    ev.add_argument("--tile", type=_size,
                    help="sliding-window prediction with HxW windows (overlapping)")
    ev.add_argument("--tta", choices=("none", "flip", "ms-flip"),
                    help="test-time augmentation: flip averages the image and its mirror; "
                    "ms-flip also does so at --tta-scales")
    ev.add_argument("--tta-scales", type=_scales,
                    help="image scales for --tta ms-flip, e.g. 0.5,0.75,1,1.25,1.5")
    ev.add_argument("--fold-bn", action=argparse.BooleanOptionalAction,
                    help="evaluate and predict with the batch norms folded into their "
                    "convolutions (same results to float rounding; --no-fold-bn: as trained)")
    ev.add_argument("--worst", type=int,
                    help="with --plot or --html: the N worst images")
    ev.add_argument("--via-out", metavar="FILE.json",
                    help="with --image-file: also write the predicted masks as a VIA 2.x "
                    "project (one polygon per object, holes kept) to correct in VIA; the class "
                    "goes into the region attribute --attribute (default 'name')")
    ev.add_argument("--via-tolerance", type=float, metavar="PIXELS",
                    help="with --via-out: how far a simplified outline may stray from the traced "
                    "one (0: exact outlines, many vertices); objects that would change by more "
                    "than 2%% are simplified less")
    ev.add_argument("--via-min-area", type=int, metavar="PIXELS",
                    help="with --via-out: objects (and holes) of fewer pixels are left out "
                    "(filled)")
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
    return with_config_defaults(p)


def with_config_defaults(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Give every flag its `Config` field's default (the one place defaults are written)."""
    defaults = {f.name: f.default for f in dataclasses.fields(Config)}
    for action in parser._actions:
        if action.dest == "help":
            continue
        if action.dest not in defaults:
            raise TypeError(f"{action.option_strings[0]}: no Config field {action.dest!r}")
        if action.default not in (None, False):   # argparse's own: unset, or store_true's
            raise TypeError(f"{action.option_strings[0]}: write its default in Config, not in "
                            "the parser")
        action.default = defaults[action.dest]
    return parser


def validate(config: Config) -> Config:
    """Reject combinations that cannot work, with a message saying what would."""
    if not (config.train or config.evaluate or config.summary or config.export):
        raise ConfigError("nothing to do: give --train, --evaluate, --summary or --export")
    if config.html and not config.evaluate:
        raise ConfigError("--html needs --evaluate (it reports an evaluation)")
    if config.image_file and not config.evaluate:
        raise ConfigError("--image-file needs --evaluate (and --restore-weights)")
    if config.via_out and not config.image_file:
        raise ConfigError("--via-out needs --image-file IMAGE_OR_FOLDER (the images to segment)")
    if config.via_out and not config.via_out.lower().endswith(".json"):
        raise ConfigError(f"--via-out {config.via_out}: name a .json file (a VIA project)")
    if not config.via_tolerance >= 0:
        raise ConfigError(f"--via-tolerance must be 0 or more pixels, got {config.via_tolerance}")
    if config.via_min_area < 0:
        raise ConfigError(f"--via-min-area must be 0 or more pixels, got {config.via_min_area}")
    if config.image_file and not config.train and not config.restore_weights:
        raise ConfigError("--image-file needs --restore-weights FILE (the model to segment with)")
    if config.evaluate and not config.train and not config.restore_weights:
        raise ConfigError("--evaluate needs --restore-weights FILE (or --train to train first)")
    if config.resume and not config.train:
        raise ConfigError("--resume only applies to --train")
    for name in ("height", "width", "channels", "batch_size", "epochs", "layers", "n",
                 "head_filters", "pyramid_filters", "workers"):
        if getattr(config, name) is not None and getattr(config, name) < 1:
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
    if not 0 <= config.ema < 1:
        raise ConfigError(f"--ema must be in [0, 1) (0: off), got {config.ema}")
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
    parser = build_parser()
    known, _ = parser.parse_known_args(argv)
    given = given_options(argv)
    if known.preset:
        preset = presets.load_preset(known.preset, parser)
        parser.set_defaults(**preset)
        given |= set(preset)
    args = vars(parser.parse_args(argv))
    # The book's 480x640 stays the default crop; training adapts it to smaller images unless
    # the command line or a preset chose one (`fcn_keras.data.crop_for_the_data`).
    args["auto_crop"] = bool(args["train"]) and not {"height", "width"} & given
    if args["image_file"] and not (args["train"] or args["evaluate"]):
        args["evaluate"] = True   # `--image-file X --restore-weights W` can only mean: predict
    if args.get("lr") is None:
        args["lr"] = 1e-2 if args["optimizer"] == "sgd" else 1e-3
    from fcn_keras.sidecar import apply_settings  # after --help: it reads images (numpy)

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
