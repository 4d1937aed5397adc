"""`coronet predict` throughput: batched against one image at a time on the same files, and the time
from start-up to the first result.

Run: .venv/bin/python benchmarks/predict_throughput.py [--images 64] [--size 150] [--side 1024]
The model is an untrained CoroNet at the paper's 150 px (speed does not depend on the weights); the
files are grayscale JPEGs of side x side pixels made here.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from coronet.model.classifier import Classifier
from coronet.params import ClassScheme, load_params
from coronet.records import ModelContract, RunRecord
from coronet.serving.predict import predict_files


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--side", type=int, default=1024)
    args = parser.parse_args()
    classes = ClassScheme.parse(load_params()).classes
    from coronet.model.network import build_model

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        build_model(classes, args.size, "none").save(root / "coronet.keras")
        RunRecord(None, "coronet", "", [], {}, 0, "float32", None,
                  ModelContract(classes, {}, None, args.size, None, 224, "stretch")).write(root / "run.json")
        rng = np.random.default_rng(0)
        files = []
        for i in range(args.images):
            path = root / f"{i}.jpeg"
            Image.fromarray(rng.integers(0, 255, (args.side, args.side), dtype=np.uint8)).save(path, quality=90)
            files.append(path)

        start = time.perf_counter()
        first = subprocess.run([sys.executable, "-m", "coronet.cli", "predict", str(files[0]), "--model",
                                str(root / "coronet.keras"), "--format", "csv"], capture_output=True, check=True)
        first_result = time.perf_counter() - start
        del first

        classifier = Classifier.load(root / "coronet.keras")
        predict_files(classifier, files[:2], 2)  # warm-up
        start = time.perf_counter()
        predict_files(classifier, files, 32)
        batched = time.perf_counter() - start
        start = time.perf_counter()
        predict_files(classifier, files, 1)
        single = time.perf_counter() - start
    print(f"{args.images} JPEGs of {args.side} px, model input {args.size} px")
    print(f"batched (32)       : {batched:6.2f} s  {args.images / batched:6.1f} img/s (goal >= 25 img/s)")
    print(f"one at a time      : {single:6.2f} s  {args.images / single:6.1f} img/s")
    print(f"speed-up           : {single / batched:.2f}x")
    print(f"first result after start-up (new process, one image): {first_result:.1f} s")


if __name__ == "__main__":
    main()
