"""Choosing the `tf.distribute` strategy (the book trains with `MirroredStrategy`)."""

from __future__ import annotations

import json
import os

import tensorflow as tf

from fcn_keras.errors import ConfigError


def strategy_name(name: str = "auto") -> str:
    """auto: `multiworker` when TF_CONFIG is set, `mirrored` over the visible GPUs when there
    are any, otherwise `default` (single device); other names unchanged."""
    if name != "auto":
        return name
    if os.environ.get("TF_CONFIG"):
        return "multiworker"
    return "mirrored" if tf.config.list_logical_devices("GPU") else "default"


def choose_strategy(name: str = "auto") -> tf.distribute.Strategy:
    """The strategy `strategy_name(name)` names."""
    name = strategy_name(name)
    if name == "multiworker":
        if not os.environ.get("TF_CONFIG"):
            raise ConfigError("--strategy multiworker needs TF_CONFIG (see README, "
                              "'Training on several machines')")
        try:
            json.loads(os.environ["TF_CONFIG"])
        except json.JSONDecodeError as exc:
            raise ConfigError(f"TF_CONFIG is not valid JSON: {exc}") from None
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "mirrored":
        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or \
            [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(devices=devices)
    return tf.distribute.get_strategy()


def is_chief() -> bool:
    """True unless this process is a non-chief worker of a multi-worker cluster."""
    config = os.environ.get("TF_CONFIG")
    if not config:
        return True
    try:
        task = json.loads(config).get("task", {})
    except json.JSONDecodeError:
        return True
    cluster = json.loads(config).get("cluster", {})
    kind, index = task.get("type", "worker"), task.get("index", 0)
    if "chief" in cluster:
        return kind == "chief"
    return kind == "worker" and index == 0
