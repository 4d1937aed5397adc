"""Training and inference precision on this machine: float32 against mixed_bfloat16 for the paper's model
(150 px, batch 10, the paper's augmentation), in one run.

Run: .venv/bin/python benchmarks/precision.py [--steps 8] [--repeats 5] [--skip-accuracy]

- Speed: the same number of training steps under each policy, after a warm-up (tracing) each, fed by
  the real tf.data pipeline (PNG decode, resize, augmentation) and by tensors already in memory; then
  inference (predict_on_batch of 32 images) under each; the policies alternate, the best of
  ``--repeats`` runs counts.
- Work: FLOPs of one training step (TensorFlow's profiler on the step's graph; it has no count for the
  depthwise convolutions' gradients, which are added with the formula it uses for the forward ones) and
  of one forward pass, so the achieved GFLOP/s can be set against the CPU's peak: cores x clock (measured
  with a dependent chain of integer multiplies when gcc is there) x float32 FLOPs per cycle (64 with two
  AVX-512 FMA units, 32 with two AVX2 ones), and against what a large matrix product reaches here in each
  precision (the microbenchmark).
- Accuracy: ``make demo``'s pipeline (synthetic source, 71 px, from scratch) under each policy, run with
  ``dvc repro`` in a scratch copy of the working tree: the test accuracy of each.
The last line is ``bf16/fp32 training images/s: <ratio>`` (pipeline-fed).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from PIL import Image

from coronet.experiments.demo import OVERRIDES
from coronet.model.dataset import make_dataset
from coronet.model.network import build_model
from coronet.model.runtime import cpu_flags, import_tensorflow_quietly, set_precision, set_seeds
from coronet.params import ClassScheme, TrainParams, load_params, project_seed

POLICIES = ("float32", "mixed_bfloat16")
INFER_BATCH = 32


def fp32_flops_per_cycle() -> tuple[int, str]:
    """Per core: 2 FMA units x float32 lanes x 2 FLOPs (AVX-512: 16 lanes; AVX2: 8)."""
    flags = cpu_flags()
    return (64, "2 AVX-512 FMA units") if "avx512f" in flags else (32, "2 AVX2 FMA units")
CLOCK_C = r"""
#include <stdio.h>
#include <time.h>
int main(void) {
    long x = 3; struct timespec a, b;
    const long n = 100000000;
    clock_gettime(CLOCK_MONOTONIC, &a);
    for (long i = 0; i < n; i++)  /* 4 dependent multiplies of 3 cycles each (adds can be folded away) */
        __asm__ volatile("imul %0,%0\n\timul %0,%0\n\timul %0,%0\n\timul %0,%0" : "+r"(x));
    clock_gettime(CLOCK_MONOTONIC, &b);
    printf("%f\n", 12.0 * n / ((b.tv_sec - a.tv_sec) + 1e-9 * (b.tv_nsec - a.tv_nsec)) / 1e6);
    return x == 0;
}
"""


def clock_mhz() -> tuple[float, str]:
    """The core clock: measured (best of 3) if gcc can build the probe, else what /proc/cpuinfo says."""
    if shutil.which("gcc"):
        with tempfile.TemporaryDirectory() as tmp:
            source, binary = Path(tmp) / "clock.c", Path(tmp) / "clock"
            source.write_text(CLOCK_C)
            subprocess.run(["gcc", "-O1", "-o", str(binary), str(source)], check=True)
            return max(float(subprocess.run([str(binary)], capture_output=True, text=True, check=True).stdout)
                       for _ in range(3)), "measured"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("cpu MHz"):
            return float(line.split(":")[1]), "/proc/cpuinfo"
    return float("nan"), "unknown"


def step_flops(model, batch: int, size: int, classes: int) -> float:
    """FLOPs of one training step (forward, gradients, Adam update) on one batch."""
    import keras
    import tensorflow as tf

    optimizer, loss_fn = keras.optimizers.Adam(1e-4), keras.losses.CategoricalCrossentropy()

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, training=True))
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    graph = step.get_concrete_function(tf.TensorSpec((batch, size, size, 3)), tf.TensorSpec((batch, classes))).graph
    options = (tf.compat.v1.profiler.ProfileOptionBuilder(tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
               .with_empty_output().build())
    counted = tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops
    depthwise_grads = 0
    for op in graph.get_operations():
        if op.type in ("DepthwiseConv2dNativeBackpropInput", "DepthwiseConv2dNativeBackpropFilter"):
            kernel = op.outputs[0].shape if op.type.endswith("Filter") else op.inputs[1].shape
            depthwise_grads += 2 * op.inputs[2].shape.num_elements() * kernel[0] * kernel[1]
    return float(counted + depthwise_grads)


def matmul_gflops(dtype: str, n: int = 2048, repeats: int = 10) -> float:
    """What one large matrix product reaches on this machine (a practical ceiling)."""
    import tensorflow as tf

    a = tf.random.normal((n, n), dtype="float32")
    a = tf.cast(a, dtype)
    tf.matmul(a, a).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        result = tf.matmul(a, a)
    result.numpy()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e9


def write_pngs(directory: Path, count: int, rng: np.random.Generator) -> list[str]:
    paths = []
    for i in range(count):
        path = directory / f"{i}.png"
        Image.fromarray(rng.integers(0, 255, (224, 224), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def timed_fit(model, data, steps: int, batch: int | None = None) -> tuple[float, float]:
    """Wall and CPU seconds (all threads of this process) per step."""
    wall, cpu = time.perf_counter(), time.process_time()
    if isinstance(data, tuple):
        model.fit(*data, batch_size=batch, epochs=1, verbose=0, shuffle=False)
    else:
        model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def forward_flops(model, batch: int, size: int) -> float:
    """FLOPs of one inference pass over a batch."""
    import tensorflow as tf

    graph = tf.function(lambda x: model(x, training=False)).get_concrete_function(
        tf.TensorSpec((batch, size, size, 3))).graph
    options = (tf.compat.v1.profiler.ProfileOptionBuilder(tf.compat.v1.profiler.ProfileOptionBuilder.float_operation())
               .with_empty_output().build())
    return float(tf.compat.v1.profiler.profile(graph=graph, options=options).total_float_ops)


def inference(models: dict, size: int, repeats: int) -> dict[str, float]:
    """Seconds per inference batch of INFER_BATCH images per policy, alternating, best of ``repeats``."""
    x = np.random.default_rng(1).uniform(0, 255, (INFER_BATCH, size, size, 3)).astype("float32")
    for model in models.values():
        model.predict_on_batch(x)  # warm-up
    best = dict.fromkeys(models, float("inf"))
    for _ in range(repeats):
        for policy, model in models.items():
            start = time.perf_counter()
            model.predict_on_batch(x)
            best[policy] = min(best[policy], time.perf_counter() - start)
    return best


def speed(args: argparse.Namespace, classes: list[str], cfg: TrainParams, tmp: Path) -> dict[str, dict[str, float]]:
    """Seconds per step, pipeline-fed and bare, per policy; seconds per inference batch; FLOPs."""
    import keras

    batch, rng = cfg.batch_size, np.random.default_rng(0)
    frame = pd.DataFrame({"path": write_pngs(tmp, args.steps * batch, rng)})
    frame["label"] = [classes[i % len(classes)] for i in range(len(frame))]
    bare = (rng.uniform(0, 255, (len(frame), args.size, args.size, 3)).astype("float32"),
            keras.utils.to_categorical([i % len(classes) for i in range(len(frame))], len(classes)))
    models, pipelines = {}, {}
    for policy in POLICIES:
        set_precision(policy)
        models[policy] = build_model(classes, args.size, "none")
        models[policy].compile(optimizer=keras.optimizers.Adam(1e-4), loss="categorical_crossentropy",
                               metrics=["accuracy"])
        pipelines[policy] = make_dataset(frame, classes, args.size, batch, augment=cfg.augment, shuffle=True,
                                         seed=0, epochs=args.repeats + 1, deterministic=cfg.deterministic)
        timed_fit(models[policy], pipelines[policy], args.steps)  # warm-up: tracing, fills the decode cache
        timed_fit(models[policy], bare, args.steps, batch)
    results = {policy: {"pipeline": float("inf"), "bare": float("inf"), "cpu": []} for policy in POLICIES}
    for repeat in range(args.repeats):
        for policy in POLICIES:
            (pipeline_s, pipeline_cpu), (bare_s, bare_cpu) = (timed_fit(models[policy], pipelines[policy], args.steps),
                                                              timed_fit(models[policy], bare, args.steps, batch))
            # CPU seconds show whether the input pipeline competes for the cores (more CPU per step) or
            # the host is slow (more wall time for the same CPU time).
            print(f"  run {repeat + 1} {policy:15s} pipeline {pipeline_s:.3f} s/step ({pipeline_cpu:.2f} CPU s)   "
                  f"bare {bare_s:.3f} s/step ({bare_cpu:.2f} CPU s)")
            results[policy]["pipeline"] = min(results[policy]["pipeline"], pipeline_s)
            results[policy]["bare"] = min(results[policy]["bare"], bare_s)
            results[policy]["cpu"].append(pipeline_cpu)
    results["infer"] = inference(models, args.size, args.repeats)
    set_precision("float32")
    model = build_model(classes, args.size, "none")
    results["flops"] = {"step": step_flops(model, batch, args.size, len(classes)),
                        "forward": forward_flops(model, INFER_BATCH, args.size)}
    return results


def demo_accuracy(tmp: Path) -> dict[str, float]:
    """``make demo``'s pipeline (its overrides of params.yaml, the synthetic source) run with ``dvc repro``
    in a scratch copy of this working tree, once per policy (the second run redoes train and evaluate
    only); the test accuracy of each, from metrics/metrics.json."""
    repo = tmp / "demo"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if Path(name).is_file():
            (repo / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(name, repo / name)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    for command in (["git", "init", "-q"], ["git", "add", "-A"], [*git, "commit", "-qm", "scratch"]):
        subprocess.run(command, cwd=repo, check=True)
    # The stages run as `python stages/...`: this interpreter's environment first on PATH.
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    accuracy = {}
    for policy in POLICIES:
        params = yaml.safe_load((repo / "params.yaml").read_text())
        for key, value in {**OVERRIDES, "train.precision": policy}.items():
            *parents, last = key.split(".")
            node = params
            for part in parents:
                node = node[part]
            node[last] = yaml.safe_load(str(value))
        (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        print(f"demo pipeline in {policy} ...", flush=True)
        subprocess.run([sys.executable, "-m", "dvc", "repro", "--quiet"], cwd=repo, env=env, check=True)
        metrics = json.loads((repo / "metrics/metrics.json").read_text())
        accuracy[policy], accuracy["test_images"] = metrics["accuracy"], metrics["n_test"]
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--size", type=int, default=150)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-accuracy", action="store_true", help="skip the demo pipeline under each policy")
    args = parser.parse_args()
    import_tensorflow_quietly()
    params = load_params()
    classes, cfg, seed = ClassScheme.parse(params).classes, TrainParams.parse(params), project_seed(params)
    batch, cores = cfg.batch_size, len(os.sched_getaffinity(0))
    set_seeds(seed, cfg.deterministic)  # as the train stage runs
    print(f"CPU: {cores} cores; bfloat16 instructions: {sorted(cpu_flags() & {'avx512_bf16', 'amx_bf16'}) or 'none'}")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{args.steps} training steps of batch {batch} at {args.size} px, best of {args.repeats}:")
        results = speed(args, classes, cfg, Path(tmp))
        accuracy = None if args.skip_accuracy else demo_accuracy(Path(tmp))
    mhz, how = clock_mhz()
    per_cycle, units = fp32_flops_per_cycle()
    peak = cores * mhz * 1e6 * per_cycle / 1e9
    flops, forward = results["flops"]["step"], results["flops"]["forward"]
    print(f"FLOPs per training step: {flops / 1e9:.1f} G ({flops / batch / 1e9:.2f} G per image); per inference "
          f"image {forward / INFER_BATCH / 1e9:.2f} G")
    ceiling = {dtype: matmul_gflops(dtype) for dtype in ("float32", "bfloat16")}
    print(f"peak float32 ({units}): {cores} cores x {mhz:.0f} MHz ({how}) x {per_cycle} = {peak:.0f} GFLOP/s; "
          f"a 2048^2 matrix product reaches {ceiling['float32']:.0f} GFLOP/s in float32 "
          f"({100 * ceiling['float32'] / peak:.0f}% of peak), {ceiling['bfloat16']:.0f} in bfloat16")
    for policy in POLICIES:
        for feed in ("pipeline", "bare"):
            seconds = results[policy][feed]
            print(f"{policy:15s} train {feed:8s} {seconds:.3f} s/step  {batch / seconds:6.1f} images/s  "
                  f"{flops / seconds / 1e9:6.1f} GFLOP/s  {100 * flops / seconds / 1e9 / peak:4.1f}% of float32 peak")
        seconds = results["infer"][policy]
        print(f"{policy:15s} infer          {seconds:.3f} s/batch {INFER_BATCH / seconds:6.1f} images/s  "
              f"{forward / seconds / 1e9:6.1f} GFLOP/s  {100 * forward / seconds / 1e9 / peak:4.1f}% of float32 peak")
        overhead = results[policy]["pipeline"] / results[policy]["bare"] - 1
        print(f"{policy:15s} input pipeline overhead {100 * overhead:+.1f}% (goal < 10%)")
    print(f"bf16/fp32 inference images/s: {results['infer']['float32'] / results['infer']['mixed_bfloat16']:.2f}")
    if accuracy:
        noise = np.sqrt(0.25 / accuracy["test_images"])
        print(f"make demo's pipeline, test accuracy on {accuracy['test_images']} images: "
              + ", ".join(f"{p} {accuracy[p]:.3f}" for p in POLICIES) + f" (binomial SE up to {noise:.3f})")
    cpu = {policy: float(np.median(results[policy]["cpu"])) for policy in POLICIES}
    print(f"bf16/fp32 CPU seconds per pipeline-fed step (median, immune to a throttled host): "
          f"{cpu['float32'] / cpu['mixed_bfloat16']:.2f}")
    print(f"bf16/fp32 bare-step images/s: {results['float32']['bare'] / results['mixed_bfloat16']['bare']:.2f}")
    print(f"bf16/fp32 training images/s: {results['float32']['pipeline'] / results['mixed_bfloat16']['pipeline']:.2f}")


if __name__ == "__main__":
    main()
