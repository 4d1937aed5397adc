"""Why the from-scratch demo could collapse, in float32 and in bfloat16 alike: its first epoch's steps.

Run: .venv/bin/python benchmarks/first_steps.py [--steps 10] [--seeds 42 7]

The demo's model (71 px, from scratch, Adam 1e-3, BatchNorm momentum 0.9) on the demo's synthetic films,
from the same initial weights and the same batches, in four arms: float32 and mixed_bfloat16, each
without and with the demo's warm-up (3 epochs) and gradient clipping (norm 1). Printed per arm and seed:
the training loss of each step, its peak, and the largest gradient norm. A peak far above ln(4) = 1.39 is
the blow-up after which a run may or may not recover (the knife edge); if it shows in both precisions,
bfloat16's collapse was that edge, not bfloat16's arithmetic.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import replace

import numpy as np

from coronet.data.phantom import draw_xray
from coronet.model.dataset import model_input
from coronet.model.fit import compiled_model
from coronet.model.runtime import import_tensorflow_quietly, set_precision, set_seeds
from coronet.params import ClassScheme, TrainParams, load_params

ARMS = {"float32, no warm-up": ("float32", 0, None), "float32, warm-up + clip": ("float32", 3, 1.0),
        "bfloat16, no warm-up": ("mixed_bfloat16", 0, None), "bfloat16, warm-up + clip": ("mixed_bfloat16", 3, 1.0)}


def batches(classes: list[str], size: int, steps: int, batch: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(steps):
        labels = rng.integers(0, len(classes), batch)
        images = np.stack([np.asarray(model_input(draw_xray(rng, classes[k], 224), size)) for k in labels])
        out.append((images, np.eye(len(classes), dtype="float32")[labels]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10, help="steps per epoch in the demo: about 10")
    parser.add_argument("--seeds", type=int, nargs="+", default=[42, 7])
    args = parser.parse_args()
    import_tensorflow_quietly()
    import keras
    import tensorflow as tf

    params = load_params()
    classes = ClassScheme.parse(params).classes
    base = replace(TrainParams.parse(params), image_size=71, weights=None, learning_rate=1e-3, bn_momentum=0.9)
    for seed in args.seeds:
        data = batches(classes, base.image_size, args.steps, base.batch_size, seed)
        for arm, (policy, warmup, clip) in ARMS.items():
            set_precision(policy)
            set_seeds(seed, deterministic=True)
            model = compiled_model(replace(base, warmup_epochs=warmup, clipnorm=clip), classes, args.steps)
            losses, norms, cross_entropy = [], [], keras.losses.CategoricalCrossentropy()
            for x, y in data:
                with tf.GradientTape() as tape:
                    loss = cross_entropy(y, model(x, training=True))
                grads = tape.gradient(loss, model.trainable_variables)
                norms.append(float(tf.linalg.global_norm([tf.cast(g, tf.float32) for g in grads])))
                model.optimizer.apply(grads, model.trainable_variables)
                losses.append(float(loss))
            print(f"seed {seed:3d}  {arm:26s} peak loss {max(losses):6.2f} (chance {math.log(len(classes)):.2f})  "
                  f"largest gradient norm {max(norms):8.1f}  losses " + " ".join(f"{v:.2f}" for v in losses),
                  flush=True)
    set_precision("float32")


if __name__ == "__main__":
    main()
