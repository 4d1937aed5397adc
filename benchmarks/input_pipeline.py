"""Input-pipeline overhead: training steps fed by the real tf.data pipeline (PNG decode, resize,
augmentation) against the same number of steps on tensors already in memory, at 150 px.

Run: .venv/bin/python benchmarks/input_pipeline.py [--steps 20] [--size 150]
Both runs use the same compiled model after a warm-up epoch each, so tracing is not counted.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from coronet.model.dataset import make_dataset
from coronet.model.network import build_model
from coronet.params import ClassScheme, TrainParams, load_params


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--size", type=int, default=150)
    args = parser.parse_args()
    params = load_params()
    classes, cfg = ClassScheme.parse(params).classes, TrainParams.parse(params)
    batch = cfg.batch_size
    import keras

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.steps * batch):
            path = Path(tmp) / f"{i}.png"
            Image.fromarray(rng.integers(0, 255, (224, 224), dtype=np.uint8)).save(path)
            paths.append(str(path))
        frame = pd.DataFrame({"path": paths, "label": [classes[i % len(classes)] for i in range(len(paths))]})
        pipeline = make_dataset(frame, classes, args.size, batch, augment=cfg.augment, shuffle=True, seed=0,
                                deterministic=cfg.deterministic)
        x = rng.uniform(0, 255, (len(paths), args.size, args.size, 3)).astype("float32")
        y = keras.utils.to_categorical([i % len(classes) for i in range(len(paths))], len(classes))
        model = build_model(classes, args.size, "none")
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy", metrics=["accuracy"])
        model.fit(pipeline, epochs=1, verbose=0)  # warm-up: tracing, and fills the decode cache
        start = time.perf_counter()
        model.fit(pipeline, epochs=1, verbose=0)
        with_pipeline = time.perf_counter() - start
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)  # warm-up for array input
        start = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, verbose=0, shuffle=False)
        in_memory = time.perf_counter() - start
    print(f"{args.steps} steps of batch {batch} at {args.size} px")
    print(f"real input pipeline : {with_pipeline:6.2f} s ({with_pipeline / args.steps:.3f} s/step)")
    print(f"in-memory tensors   : {in_memory:6.2f} s ({in_memory / args.steps:.3f} s/step)")
    print(f"input overhead      : {100 * (with_pipeline / in_memory - 1):+.1f}% (goal < 10%)")


if __name__ == "__main__":
    main()
