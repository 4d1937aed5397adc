"""Stage train: fit CoroNet on the train split, watch the val split, track the run in MLflow."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pandas as pd

from coronet import tracking
from coronet.console import import_tensorflow_quietly
from coronet.dataset import load_split, make_dataset
from coronet.errors import run_stage
from coronet.files import atomic_path, sha256_file, write_csv, write_json
from coronet.model import inference_copy
from coronet.params import class_names, flatten, load_params
from coronet.training import (
    HISTORY_COLUMNS,
    Checkpoints,
    check_params,
    compiled_model,
    describe_devices,
    epoch_callback,
    fingerprint,
    recalibrate_batchnorm,
    resolve_precision,
    set_precision,
    set_seeds,
    throughput,
)

MODELS = Path("models")


def main() -> int:
    params = load_params()
    cfg, classes, seed = params["train"], class_names(params), params.integer("seed")
    check_params(cfg)
    set_seeds(seed, cfg["deterministic"])
    devices = describe_devices()
    devices["precision"] = resolve_precision(cfg["precision"])
    set_precision(devices["precision"])
    print(f"training in {devices['precision']} on {devices['device']}")
    size, batch = int(cfg["image_size"]), int(cfg["batch_size"])
    frames = {split: load_split(split) for split in ("train", "val", "test")}
    val_ds = make_dataset(frames["val"], classes, size, batch)
    checkpoints = Checkpoints(MODELS / "checkpoints", fingerprint(
        cfg, classes, seed, sha256_file("data/processed/splits.csv"), sha256_file("data/processed/images.csv")))
    state = checkpoints.load_state() if cfg["checkpoint"] else None
    first_epoch, epochs = (state["epoch"] if state else 0), int(cfg["epochs"])
    # Every epoch's order and augmentation depend on (seed, epoch) alone: a resumed run continues both streams.
    train_ds = make_dataset(frames["train"], classes, size, batch, augment=cfg["augment"], shuffle=True, seed=seed,
                            first_epoch=first_epoch, epochs=epochs)
    model = compiled_model(cfg, classes, checkpoints, state)

    run = tracking.PipelineRun(params["tracking"]["experiment"])
    resumed = state["run_id"] if state else None
    if run.start(resumed, os.environ.get("DVC_EXP_NAME") or None, system_metrics=True) and not resumed:
        lineage_tags, lineage_params = tracking.data_lineage()
        run.log_training(
            {**flatten({"train": cfg, "resize": params["resize"]}), "seed": seed, "classes": ",".join(classes),
             **lineage_params},
            {**lineage_tags, **devices, "mlflow.source.git.commit": tracking.git_commit(),
             "dvc.exp_name": os.environ.get("DVC_EXP_NAME", ""), **{f"images.{k}": len(v) for k, v in frames.items()}},
            tracking.split_datasets(frames))
    history, clock = list(state["history"]) if state else [], [time.perf_counter()]

    def on_epoch_end(model: object, epoch: int, logs: dict[str, float]) -> None:
        clock.append(time.perf_counter())
        history.append({"epoch": epoch, **{k: float(v) for k, v in logs.items()}})
        # Written every epoch, so `dvc plots show` and the VS Code extension follow a run as it trains.
        write_csv(MODELS / "history.csv", pd.DataFrame(history).reindex(columns=HISTORY_COLUMNS))
        run.log_epoch(epoch, logs, clock[-1] - clock[-2])
        if cfg["checkpoint"]:
            checkpoints.save(model, epoch, history, run.run_id)

    if first_epoch < epochs:  # train_ds holds epochs first_epoch..epochs-1 back to back; it shuffles itself
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=first_epoch, verbose=2,
                  steps_per_epoch=math.ceil(len(frames["train"]) / batch), callbacks=[epoch_callback(on_epoch_end)],
                  shuffle=False)
    if cfg["recalibrate_bn"]:
        before = model.evaluate(val_ds, return_dict=True, verbose=0)
        steps = recalibrate_batchnorm(model, make_dataset(frames["train"], classes, size, batch))
        after = model.evaluate(val_ds, return_dict=True, verbose=0)
        print(f"BatchNorm statistics re-estimated over {steps} training batches: val accuracy "
              f"{before['accuracy']:.3f} -> {after['accuracy']:.3f}")
        run.log_metrics({"bn_recalibration/val_before": before["accuracy"],
                         "bn_recalibration/val_after": after["accuracy"]})
    with atomic_path(MODELS / "coronet.keras", suffix=".keras") as tmp:
        inference_copy(model, classes).save(tmp)
    run.end()
    speed = throughput(clock, len(frames["train"]))
    write_json(MODELS / "run.json", {
        "run_id": run.run_id, "experiment": params["tracking"]["experiment"], "tracking_uri": tracking.tracking_uri(),
        "tracking_errors": run.errors, "train": cfg, "seed": seed, "precision": devices["precision"],
        "throughput": speed, "model": {"classes": classes, "image_size": size, "weights": str(cfg["weights"]),
                                       "resize": {"size": int(params["resize"]["size"]),
                                                  "mode": params["resize"]["mode"]}}})
    checkpoints.clear()
    if speed:
        print(f"training speed: {speed['images_per_s']} images/s ({devices['precision']})")
    print(f"model saved to {MODELS / 'coronet.keras'}; MLflow run {run.run_id or 'not recorded'}")
    return 0


if __name__ == "__main__":
    import_tensorflow_quietly()  # before anything imports it: its start-up lines are not for our users
    run_stage(main)
