"""Cost of the stress tests against the evaluation's own prediction pass, both in one run (a ratio).

Run: .venv/bin/python benchmarks/stress_cost.py [--images 64] [--size 150]
An untrained CoroNet at the paper's 150 px (speed does not depend on the weights) and synthetic 224 px
processed images. (a) the evaluation's pass: the tf.data pipeline over the PNGs and model.predict, as
stages/evaluate.py runs it; (b) the stress step with params.yaml's transforms (a baseline pass plus
every transform and strength), reusing the loaded model and batching every transform.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from coronet.data.phantom import draw_xray
from coronet.evaluation import stress
from coronet.model.classifier import Classifier
from coronet.model.dataset import make_dataset
from coronet.params import EvaluateParams, load_params


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=150)
    args = parser.parse_args()
    import keras

    from coronet.model.network import build_model

    cfg = EvaluateParams.parse(load_params())
    classes, transforms, batch = cfg.scheme.classes, cfg.stress.transforms, cfg.batch_size
    keras.utils.set_random_seed(0)
    classifier = Classifier(build_model(classes, args.size, "none"), classes, args.size, 224, "stretch")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for k in range(args.images):
            path = Path(tmp) / f"{k}.png"
            Image.fromarray(draw_xray(rng, classes[k % len(classes)], 224)).save(path)
            paths.append(str(path))
        frame = pd.DataFrame({"path": paths, "label": [classes[k % len(classes)] for k in range(args.images)]})
        classifier.model.predict(make_dataset(frame.head(batch), classes, args.size, batch), verbose=0)  # warm-up
        started = time.perf_counter()
        classifier.model.predict(make_dataset(frame, classes, args.size, batch), verbose=0)
        evaluation = time.perf_counter() - started
        started = time.perf_counter()
        stress.run(classifier, stress.decode_files(paths), list(frame["label"]), transforms, 0, batch)
        stressed = time.perf_counter() - started
    copies = 1 + sum(map(len, transforms.values()))
    print(f"{args.images} test images at {args.size} px, batch {batch}")
    print(f"evaluation prediction pass: {evaluation:.2f} s ({args.images / evaluation:.1f} img/s)")
    print(f"stress step: {copies} passes (baseline + {copies - 1} transformed copies) in {stressed:.2f} s "
          f"({copies * args.images / stressed:.1f} img/s)")
    print(f"per pass, stress / evaluation: {stressed / copies / evaluation:.2f}")
    print(f"stress step / evaluation prediction pass: {stressed / evaluation:.1f}")


if __name__ == "__main__":
    main()
