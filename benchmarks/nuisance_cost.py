"""What the shortcut mitigation costs: training steps fed by the tf.data pipeline with the nuisance
augmentation (every transform on, at the probabilities `coronet study` uses) against the same pipeline
without it, in one run, at the paper's 150 px and batch 10.

Run: .venv/bin/python benchmarks/nuisance_cost.py [--steps 8] [--repeats 5] [--size 150]
Both feed the same compiled model (warmed up on each pipeline first), alternating, best of --repeats.
The last line is `nuisance/plain seconds per training step: <ratio>` (goal <= 1.10).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from coronet.data.phantom import draw_xray
from coronet.experiments.study import NUISANCE
from coronet.model.dataset import make_dataset
from coronet.model.network import build_model
from coronet.model.runtime import import_tensorflow_quietly, set_seeds
from coronet.params import ClassScheme, NuisanceParams, TrainParams, load_params, project_seed


def nuisance_on(cfg: TrainParams) -> TrainParams:
    """params' train section with the study's nuisance probabilities (``train.nuisance.<name>.p``)."""
    steps = {name: replace(step, p=float(NUISANCE.get(f"train.nuisance.{name}.p", step.p)))
             for name, step in cfg.nuisance.steps.items()}
    return replace(cfg, nuisance=NuisanceParams(steps))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=150)
    args = parser.parse_args()
    import_tensorflow_quietly()
    import keras

    params = load_params()
    classes, plain_cfg, seed = ClassScheme.parse(params).classes, TrainParams.parse(params), project_seed(params)
    cfg = nuisance_on(plain_cfg)
    set_seeds(seed, plain_cfg.deterministic)
    batch, rng = plain_cfg.batch_size, np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i in range(args.steps * batch):  # chest-like films at the resize stage's 224 px
            paths.append(str(Path(tmp) / f"{i}.png"))
            Image.fromarray(draw_xray(rng, classes[i % len(classes)], 224)).save(paths[-1])
        frame = pd.DataFrame({"path": paths, "label": [classes[i % len(classes)] for i in range(len(paths))]})
        feeds = {name: make_dataset(frame, classes, args.size, batch, augment=c.augment, nuisance=c.nuisance,
                                    shuffle=True, seed=seed, epochs=args.repeats + 1, deterministic=c.deterministic)
                 for name, c in (("plain", plain_cfg), ("nuisance", cfg))}
        model = build_model(classes, args.size, "none")
        model.compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy", metrics=["accuracy"])
        for name in feeds:  # warm-up: tracing, and each pipeline's decode cache
            model.fit(feeds[name], steps_per_epoch=args.steps, epochs=1, verbose=0)
        best = {name: float("inf") for name in feeds}
        for repeat in range(args.repeats):
            for name in feeds:
                start = time.perf_counter()
                model.fit(feeds[name], steps_per_epoch=args.steps, epochs=1, verbose=0)
                seconds = (time.perf_counter() - start) / args.steps
                best[name] = min(best[name], seconds)
                print(f"  run {repeat + 1} {name:9s} {seconds:.3f} s/step")
    active = ", ".join(f"{n} p={s.p:g}" for n, s in cfg.nuisance.active.items())
    print(f"{args.steps} training steps of batch {batch} at {args.size} px, best of {args.repeats}; nuisance: {active}")
    for name, seconds in best.items():
        print(f"{name:9s} {seconds:.3f} s/step  {batch / seconds:5.1f} images/s")
    print(f"nuisance/plain seconds per training step: {best['nuisance'] / best['plain']:.3f} (goal <= 1.10)")


if __name__ == "__main__":
    main()
