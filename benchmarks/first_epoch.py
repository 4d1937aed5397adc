"""What building the training state before `fit` saves: the first epoch of the demo's model (Xception at
71 px, from scratch, Adam, batch 10, 28 training and 10 validation films) as Keras traces it by itself
(optimizer, loss and metric variables created inside the traced step, which is then traced again) against
:func:`coronet.model.fit.build_training_state` first. Each arm runs in a fresh process (tracing is per process),
alternating, best of --repeats; both must end with the same weights.

Run: .venv/bin/python benchmarks/first_epoch.py [--repeats 3]
The last line is `built/plain seconds for the first epoch: <ratio>`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

ARMS = ("plain", "built")


def one_run(arm: str) -> dict[str, float]:
    import keras
    import numpy as np

    from coronet.model.fit import build_training_state
    from coronet.model.network import build_model
    from coronet.model.runtime import import_tensorflow_quietly, set_seeds

    import_tensorflow_quietly()
    import tensorflow as tf
    set_seeds(1)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (38, 71, 71, 3)).astype("float32")
    y = np.eye(4, dtype="float32")[np.arange(38) % 4]
    train = tf.data.Dataset.from_tensor_slices((x[:28], y[:28])).batch(10)
    val = tf.data.Dataset.from_tensor_slices((x[28:], y[28:])).batch(10)
    model = build_model(["a", "b", "c", "d"], 71, "none")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy", metrics=["accuracy"])
    started = time.perf_counter()
    if arm == "built":
        build_training_state(model)
    history = model.fit(train, validation_data=val, epochs=1, verbose=0).history
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "weights": float(sum(w.numpy().astype("float64").sum() for w in model.weights)),
            "loss": history["loss"][0]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--arm", choices=ARMS, help=argparse.SUPPRESS)  # one measurement, in this process
    args = parser.parse_args()
    if args.arm:
        print(json.dumps(one_run(args.arm)))
        return
    runs: dict[str, list[dict[str, float]]] = {arm: [] for arm in ARMS}
    for _ in range(args.repeats):
        for arm in ARMS:
            out = subprocess.run([sys.executable, __file__, "--arm", arm], capture_output=True, text=True, check=True)
            runs[arm].append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(f"{arm}: first epoch {runs[arm][-1]['seconds']:.1f} s, loss {runs[arm][-1]['loss']:.6f}")
    same = {(r["weights"], r["loss"]) for arm in ARMS for r in runs[arm]}
    print("same weights and loss in both arms" if len(same) == 1 else f"RESULTS DIFFER: {same}")
    best = {arm: min(r["seconds"] for r in runs[arm]) for arm in ARMS}
    print(f"built/plain seconds for the first epoch: {best['built'] / best['plain']:.2f}")


if __name__ == "__main__":
    main()
