"""Re-estimating BatchNorm statistics after a short or from-scratch training run."""

from __future__ import annotations

from typing import Any


def recalibrate_batchnorm(model: Any, dataset: Any) -> int:
    """Re-estimates every BatchNorm layer's moving mean and variance as exact averages over ``dataset``.

    Why: with few steps (from scratch, short runs) the moving statistics lag far behind the weights
    and inference-mode accuracy sits at chance although the training set is fitted. Setting momentum
    to (k-1)/k on batch k makes the moving values the plain mean of the batch statistics. Runs eagerly
    so the changing momentum takes effect; weights other than the statistics are untouched.
    """
    import keras

    layers = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    original = [layer.momentum for layer in layers]
    batches = 0
    try:
        for batch, _ in dataset:
            batches += 1
            for layer in layers:
                layer.momentum = (batches - 1) / batches
            model(batch, training=True)
    finally:
        for layer, momentum in zip(layers, original, strict=True):
            layer.momentum = momentum
    return batches
