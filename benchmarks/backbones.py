"""Training and inference time of each registered backbone at the suite's 71 px (tests/conftest.py TINY), in
one run: which one the plumbing tests can afford.

Run: .venv/bin/python benchmarks/backbones.py [--steps 6] [--repeats 3] [--batch 10]

Each backbone is built from scratch with CoroNet's head, compiled as the train stage compiles it, traced
once (a warm-up step), then timed over ``--steps`` training steps on the same images in memory and over one
prediction of 32 images; the backbones alternate and the best of ``--repeats`` runs counts. Also: the
saved inference model's size (what DVC hashes and MLflow copies). The last line is
``xception/mobilenet_v2 training step time: <ratio>``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from coronet.model.network import BACKBONES, build_model, inference_copy

CLASSES = ["covid", "normal", "pneumonia_bacterial", "pneumonia_viral"]


def measure(name: str, steps: int, batch: int, size: int) -> dict[str, float]:
    import keras

    keras.utils.set_random_seed(0)
    model = build_model(CLASSES, size, None, backbone_name=name)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    y = keras.utils.to_categorical(rng.integers(0, len(CLASSES), batch), len(CLASSES))
    model.train_on_batch(x, y)  # tracing
    started = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(x, y)
    train = (time.perf_counter() - started) / steps
    images = rng.uniform(0, 255, (32, size, size, 3)).astype("float32")
    model.predict_on_batch(images)
    started = time.perf_counter()
    model.predict_on_batch(images)
    predict = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.keras"
        inference_copy(model, CLASSES, name).save(path)
        megabytes = path.stat().st_size / 1e6
    return {"train_step_s": train, "predict_32_s": predict, "saved_mb": megabytes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--size", type=int, default=71)
    args = parser.parse_args()
    best: dict[str, dict[str, float]] = {}
    for _ in range(args.repeats):
        for name in BACKBONES:
            result = measure(name, args.steps, args.batch, args.size)
            best[name] = {k: min(v, best.get(name, {}).get(k, v)) for k, v in result.items()}
    for name, result in best.items():
        print(f"{name:<14} training step {result['train_step_s']:.3f} s (batch {args.batch}), predict 32 images "
              f"{result['predict_32_s']:.3f} s, saved model {result['saved_mb']:.1f} MB")
    ratio = best["xception"]["train_step_s"] / best["mobilenet_v2"]["train_step_s"]
    print(f"xception/mobilenet_v2 training step time: {ratio:.1f}")


if __name__ == "__main__":
    main()
