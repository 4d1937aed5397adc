"""Where and how the model runs: TensorFlow imported quietly, seeds, determinism, precision policy, devices
and the distribution strategy."""

from __future__ import annotations

import os
import random
import sys
from pathlib import Path
from typing import Any

import numpy as np

from coronet.errors import ParamsError


def import_tensorflow_quietly() -> None:
    """TensorFlow without its C++ start-up lines. TensorFlow 2.21 logs through absl before absl is set up
    ("WARNING: All log messages before absl::InitializeLog() ...", "oneDNN custom operations are on ..."),
    and TF_CPP_MIN_LOG_LEVEL does not reach those lines. Nothing in them is for our users to act on, so the
    import runs with the process's stderr pointed at /dev/null; Python errors raised by the import still
    show, after stderr is back. Stages call it before anything imports TensorFlow."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
            import tensorflow  # noqa: F401
    finally:
        os.dup2(saved, 2)
        os.close(saved)


# CPU instructions that run bfloat16 matrix products natively (oneDNN uses them under mixed_bfloat16).
BF16_CPU_FLAGS = {"avx512_bf16", "amx_bf16"}


def set_seeds(seed: int, deterministic: bool = True) -> None:
    """Python, NumPy and TensorFlow from one seed. ``deterministic`` also makes TensorFlow choose
    deterministic kernels (a CPU rerun is then bit-identical); on GPUs some ops have none, and those
    that do can be slower."""
    import keras
    import tensorflow as tf

    random.seed(seed)
    np.random.seed(seed)
    keras.utils.set_random_seed(seed)
    if deterministic:
        tf.config.experimental.enable_op_determinism()


def cpu_flags(cpuinfo: str | None = None) -> set[str]:
    """The CPU's feature flags as Linux reports them in /proc/cpuinfo (empty elsewhere)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return set()
    line = next((line for line in cpuinfo.splitlines() if line.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def resolve_precision(requested: str) -> str:
    """``train.precision`` -> a Keras dtype policy. ``auto``: float16 on GPUs of compute capability 7.0
    or newer (tensor cores); bfloat16 on CPUs with AVX512_BF16 or AMX, where benchmarks/precision.py
    measured it faster than float32; float32 otherwise."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if requested == "mixed_float16" and not gpus:
        raise ParamsError("params.yaml: train.precision mixed_float16 needs a GPU; on CPUs use mixed_bfloat16 "
                          "or auto")
    if requested != "auto":
        return requested
    if gpus:
        capability = min(tuple(tf.config.experimental.get_device_details(gpu).get("compute_capability", (0, 0)))
                         for gpu in gpus)
        return "mixed_float16" if capability >= (7, 0) else "float32"
    return "mixed_bfloat16" if cpu_flags() & BF16_CPU_FLAGS else "float32"


def set_precision(policy: str) -> None:
    """The dtype policy of every layer built from now on (the softmax head stays float32 in any case)."""
    import keras

    keras.mixed_precision.set_global_policy(policy)


def describe_devices() -> dict[str, str]:
    """What the run trains on, for MLflow: GPU model and count, or CPU."""
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        return {"device": "CPU", "gpu_count": "0"}
    names = sorted({tf.config.experimental.get_device_details(g).get("device_name", "GPU") for g in gpus})
    return {"device": f"{len(gpus)} x {', '.join(names)}", "gpu_count": str(len(gpus))}


def strategy(devices: list[str] | None = None) -> Any:
    """``tf.distribute.MirroredStrategy`` over ``devices`` (default: every GPU, when there are several),
    else the default strategy. Under MirroredStrategy ``train.batch_size`` is the global batch: each of
    the N replicas computes batch_size / N images of every step, and the gradients are summed, so the
    optimisation is the one a single device makes with that batch."""
    import tensorflow as tf

    if devices is None:
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in gpus] if len(gpus) > 1 else []
    if len(devices) > 1:
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()
