"""What a checkpoint costs against the epoch it saves, on the demo's model (Xception at 71 px, Adam, batch 10,
92 training images: 10 steps an epoch), in one run: the reason `train.checkpoint_every_s` saves at most once a
minute instead of after every epoch.

Run: .venv/bin/python benchmarks/checkpoint_cost.py [--steps 10] [--saves 3] [--backbone xception]

The last line is ``checkpoint save / epoch of training steps: <ratio>``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from coronet.model.checkpoints import Checkpoints
from coronet.model.fit import build_training_state, compiled_model
from coronet.model.runtime import import_tensorflow_quietly
from coronet.params import TrainParams, load_params


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--saves", type=int, default=3)
    parser.add_argument("--backbone", default="xception")
    args = parser.parse_args()
    import_tensorflow_quietly()
    params = load_params()
    params["train"].update({"image_size": 71, "weights": "none", "backbone": args.backbone})
    classes = params["classes"]
    model = compiled_model(TrainParams.parse(params), classes, args.steps)
    build_training_state(model)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (10, 71, 71, 3)).astype("float32")
    y = np.eye(len(classes))[rng.integers(0, len(classes), 10)]
    model.train_on_batch(x, y)  # tracing
    started = time.perf_counter()
    for _ in range(args.steps):
        model.train_on_batch(x, y)
    epoch = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        checkpoints = Checkpoints(Path(folder), "benchmark")
        seconds = []
        for k in range(args.saves):
            started = time.perf_counter()
            checkpoints.save(model, k + 1, [{"epoch": k + 1}], None)
            seconds.append(time.perf_counter() - started)
        size = sum(p.stat().st_size for p in Path(folder).glob("*.keras")) / 1e6
    save = min(seconds)
    print(f"{args.backbone} at 71 px: {args.steps} training steps {epoch:.2f} s; a checkpoint ({size:.0f} MB with "
          f"Adam's moments) {save:.2f} s (best of {args.saves})")
    print(f"checkpoint save / epoch of training steps: {save / epoch:.2f}")


if __name__ == "__main__":
    main()
