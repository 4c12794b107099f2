# ruff: noqa
"""Precise-BN probe: recompute BN moving stats of the shipped CamVid model over train data."""
import sys, shutil, time
from pathlib import Path
import numpy as np, keras, tensorflow as tf
from fcn_keras.config import parse_args
from fcn_keras.api import Segmenter
from fcn_keras import data

import os; DATA = os.environ.get("DATA", "/work/shared/data/camvid")
W = os.environ.get("W", "weights/fcn4s-ResNet20v2-3layer-camvid-best-iou.weights.h5"); PRESET = os.environ.get("PRESET", "camvid"); EXTRA = os.environ.get("EXTRA", "").split()
mode, batches, out = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
config = parse_args(["--evaluate", "--preset", PRESET, "--data-path", DATA, *EXTRA,
                     "--restore-weights", W, "--verbose", "0"])
seg = Segmenter.from_config(config, tta="none")
model = seg.model
bns = [l for l in model._flatten_layers() if isinstance(l, keras.layers.BatchNormalization)]
print(len(bns), "BN layers")
ds = data.load(config)
training = mode in ("aug", "crop")
if mode == "crop":
    config = config.replace(scale_range=(1.0, 1.0), color_jitter=0.0)
gen = data.generator(ds, "train", config, ds.classes, training=training)
tfds = gen.dataset(repeat=training)
step = tf.function(lambda x: model(x, training=True), reduce_retracing=True)
t = time.time()
k = 0
for images, _ in tfds:
    k += 1
    for l in bns:
        l.momentum = (k - 1) / k
    model(images, training=True)
    if k >= batches:
        break
print("batches", k, "seconds", round(time.time() - t, 1))
out.mkdir(parents=True, exist_ok=True)
dst = out / Path(W).name
model.save_weights(dst)
for suffix in (".classes.json", ".model.json"):
    src = Path(W.replace(".weights.h5", suffix))
    shutil.copy(src, out / src.name)
