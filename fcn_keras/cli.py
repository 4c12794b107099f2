"""`python fcn.py` / `fcn-keras`: parse the options once, then train, evaluate, predict or export.

User errors (`FCNError`) print one line and exit with status 2; `--debug` shows the traceback.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from fcn_keras.errors import FCNError  # noqa: E402


def print_summary(config, model, backbone) -> None:
    """Print both models (as the book does) and plot them when pydot and graphviz are present."""
    import keras

    backbone.model.summary()
    model.summary(expand_nested=False)
    try:
        import pydot
        pydot.Dot.create(pydot.Dot())
    except Exception:  # ImportError, or pydot present but the graphviz binaries missing
        print("Not plotting the models: pydot and graphviz are needed "
              "(pip install pydot; apt-get install graphviz).")
        return
    os.makedirs(config.output_dir, exist_ok=True)
    for net, name in ((model, "fcn"), (backbone.model, "backbone")):
        path = os.path.join(config.output_dir, f"{name}.png")
        keras.utils.plot_model(net, to_file=path, show_shapes=True)
        print(f"Model plot written to {path}")


def run(config) -> int:
    from fcn_keras.runtime import configure_runtime
    configure_runtime(config)
    if config.summary and not (config.train or config.evaluate or config.export):
        from fcn_keras.models import build_model
        # the book's four classes: the summary shows the layers, the dataset is not read
        model, backbone = build_model(n_classes=4, **config.model_options())
        print_summary(config, model, backbone)
        return 0
    from fcn_keras.app import FCN
    app = FCN(config)
    if config.summary:
        print_summary(config, app.model, app.backbone)
    if config.train:
        app.train()
    if config.restore_weights or (config.evaluate and config.train):
        app.restore_weights()
    if config.evaluate:
        if config.image_file:
            app.predict_files(config.image_file)
        else:
            app.evaluate()
    if config.export:
        app.export(config.export)
    return 0


def main(argv=None) -> int:
    from fcn_keras.config import parse_args
    debug = "--debug" in (sys.argv[1:] if argv is None else argv)
    try:
        config = parse_args(argv)
        return run(config)
    except FCNError as exc:
        if debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:  # training turns Ctrl-C into a clean stop (InterruptGuard)
        print(str(exc) or "interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
