"""Model tier: data-parallel training (MirroredStrategy) has run: over two logical CPU devices, `fit` trains,
and train.batch_size is the global batch: the same steps and, with nothing random, the same weights as on
one device.

The network is CoroNet's dense head on the pixels (a registered backbone of its own), not Xception: the thing
under test is the strategy. Xception's BatchNorm layers normalise each replica's half batch by its own
statistics, so on two replicas it is another optimisation, not the same one summed in another order, and no
tolerance could be argued for it."""

from __future__ import annotations

import json
import subprocess
import sys

SCRIPT = r"""
import json, sys
import numpy as np, pandas as pd
from PIL import Image
import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
devices = [d.name for d in tf.config.list_logical_devices("CPU")]

from coronet.model.checkpoints import Checkpoints
from coronet.model.fit import fit
from coronet.model.network import BACKBONES, Backbone

# ARCHITECTURE.md's door for a backbone: one registry entry, named by train.backbone. This one is the pixels
# themselves (no BatchNorm, nothing random): CoroNet's head on raw 0..255 input.
BACKBONES["pixels"] = Backbone(lambda image: image, 1.0, 0.0, 8, "input_scale", None)
from coronet.model.runtime import set_seeds, strategy
from pathlib import Path
from coronet.params import AugmentParams, NuisanceParams, TrainParams

folder = sys.argv[1]
rng = np.random.default_rng(0)
rows = []
for k in range(8):
    path = f"{folder}/{k}.png"
    Image.fromarray(rng.integers(0, 255, (80, 80), dtype=np.uint8)).save(path)
    rows.append({"path": path, "label": ["a", "b"][k % 2]})
frames = {"train": pd.DataFrame(rows), "val": pd.DataFrame(rows[:4])}
still = AugmentParams(0, 0, 0, 0, 0, 0, False, False)
cfg = TrainParams(backbone="pixels", image_size=71, weights=None, dropout=0.0, dense_units=8, learning_rate=1e-3, warmup_epochs=0,
                  lr_decay="none",
                  clipnorm=None, batch_size=4, epochs=1, augment=still, nuisance=NuisanceParams({}), bn_momentum=0.9,
                  recalibrate_bn=True, precision="float32", balance_sources=False, deterministic=False,
                  checkpoint=False, checkpoint_every_s=0)
out = {}
for name, chosen in (("one", strategy([devices[0]])), ("two", strategy(devices))):
    set_seeds(3, deterministic=False)
    fitted = fit(cfg, ["a", "b"], 3, frames, checkpoints=Checkpoints(Path(folder), "k"), state=None, on_epoch=[],
                 strategy=chosen)
    out[name] = {"replicas": chosen.num_replicas_in_sync, "steps": int(fitted.model.optimizer.iterations.numpy()),
                 "loss": fitted.history[-1]["loss"], "recalibrated": bool(fitted.recalibration),
                 "weights": [w.numpy().ravel().tolist() for w in fitted.model.trainable_weights]}
print(json.dumps(out))
"""


def test_fit_runs_under_mirrored_strategy_with_the_global_batch(tmp_path):
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    one, two = result["one"], result["two"]
    assert (one["replicas"], two["replicas"]) == (1, 2)
    # 8 images, batch 4: two optimizer steps an epoch whatever the replicas (each replica takes 2 images a step)
    assert one["steps"] == two["steps"] == 2
    # The loss (about 600 here: saturated softmax on raw pixels) summed in another order: float32 rounding, a
    # relative 1e-7 a term over 8 images, far inside 1e-3.
    assert two["recalibrated"] and abs(two["loss"] - one["loss"]) < 1e-3
    # The same optimisation, its gradients summed over two replicas in another order: they differ by float32
    # rounding (relative ~1e-7 a term, a few terms), and Adam's step lr * m / (sqrt(v) + 1e-7) changes by the
    # same relative amount where |g| >> 1e-7. So the weights agree to far below a thousandth of one step
    # (1e-3 x lr = 1e-6), where a wrong global batch (another split of the images into steps) moves them by
    # whole steps (~1e-3).
    for a, b in zip(one["weights"], two["weights"], strict=True):
        assert max(abs(x - y) for x, y in zip(a, b, strict=True)) < 1e-6
