"""Stage train: fit CoroNet on the train split, watch the val split, track the run in MLflow."""

from __future__ import annotations

import os

from coronet import paths, tracking
from coronet.console import import_tensorflow_quietly
from coronet.dataset import load_split
from coronet.errors import run_stage
from coronet.files import atomic_path, sha256_file, write_json
from coronet.model import inference_copy
from coronet.params import class_scheme, load_params
from coronet.training import (
    Checkpoints,
    check_params,
    describe_devices,
    fingerprint,
    fit,
    resolve_precision,
    set_precision,
    set_seeds,
    throughput,
)


def main() -> int:
    params = load_params()
    cfg, scheme, seed = params["train"], class_scheme(params), params.integer("seed")
    check_params(cfg)
    set_seeds(seed, cfg["deterministic"])
    devices = {**describe_devices(), "precision": resolve_precision(cfg["precision"])}
    set_precision(devices["precision"])
    print(f"training in {devices['precision']} on {devices['device']}")
    frames = {split: load_split(split, paths.IMAGES_CSV, paths.SPLITS) for split in ("train", "val", "test")}
    checkpoints = Checkpoints(paths.MODELS / "checkpoints", fingerprint(
        cfg, scheme.classes, seed, sha256_file(paths.SPLITS), sha256_file(paths.IMAGES_CSV)))
    state = checkpoints.load_state() if cfg["checkpoint"] else None

    run = tracking.PipelineRun(params["tracking"]["experiment"])
    if run.start(state and state["run_id"], os.environ.get("DVC_EXP_NAME") or None, system_metrics=True) \
            and not state:
        run.log_training(params, frames, devices)
    model, clock = fit(cfg, scheme.classes, seed, frames, checkpoints, state, paths.HISTORY, run)
    with atomic_path(paths.MODEL, suffix=".keras") as tmp:
        inference_copy(model, scheme.classes).save(tmp)
    run.end()
    speed = throughput(clock, len(frames["train"]))
    write_json(paths.RUN, {
        "run_id": run.run_id, "experiment": params["tracking"]["experiment"], "tracking_uri": tracking.tracking_uri(),
        "tracking_errors": run.errors, "train": cfg, "seed": seed, "precision": devices["precision"],
        "throughput": speed,
        "model": {"classes": scheme.classes, "groups": scheme.groups, "image_size": int(cfg["image_size"]),
                  "weights": str(cfg["weights"]),
                  "resize": {"size": int(params["resize"]["size"]), "mode": params["resize"]["mode"]}}})
    checkpoints.clear()
    print(f"model saved to {paths.MODEL}; MLflow run {run.run_id or 'not recorded'}; "
          f"{speed['images_per_s'] if speed else '-'} images/s ({devices['precision']})")
    return 0


if __name__ == "__main__":
    import_tensorflow_quietly()  # before anything imports it: its start-up lines are not for our users
    run_stage(main)
