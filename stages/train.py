"""Stage train: fit CoroNet on the train split, watch the val split, track the run in MLflow."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import pandas as pd

from coronet import tracking
from coronet.dataset import load_split, make_dataset
from coronet.errors import run_stage
from coronet.files import atomic_path, sha256_file, write_csv, write_json
from coronet.model import build_model, inference_copy
from coronet.params import class_names, flatten, load_params
from coronet.plots import training_curves
from coronet.training import (
    HISTORY_COLUMNS,
    Checkpoints,
    check_params,
    describe_devices,
    epoch_callback,
    fingerprint,
    recalibrate_batchnorm,
    resolve_precision,
    restore_seed_states,
    set_precision,
    set_seeds,
    strategy,
    throughput,
)

MODELS = Path("models")


def main() -> int:
    params = load_params()
    cfg, classes, seed = params["train"], class_names(params), params.integer("seed")
    resize_cfg, tracking_cfg, serving_cfg = params["resize"], params["tracking"], params["serving"]
    check_params(cfg)
    serving_config = {key: serving_cfg.integer(key, 1) for key in ("max_rows", "batch_size")}
    set_seeds(seed, cfg["deterministic"])
    import keras
    import mlflow

    devices = describe_devices()
    devices["precision"] = resolve_precision(cfg["precision"])
    set_precision(devices["precision"])
    print(f"training in {devices['precision']} on {devices['device']}")
    size, batch = int(cfg["image_size"]), int(cfg["batch_size"])
    train_frame, val_frame = load_split("train"), load_split("val")
    val_ds = make_dataset(val_frame, classes, size, batch)

    checkpoints = Checkpoints(MODELS / "checkpoints", fingerprint(
        cfg, classes, seed, sha256_file("data/processed/splits.csv"), sha256_file("data/processed/images.csv")))
    state = checkpoints.load_state() if cfg["checkpoint"] else None
    first_epoch, epochs = (state["epoch"] if state else 0), int(cfg["epochs"])
    # Every epoch's order and augmentation depend on (seed, epoch) alone: a resumed run continues both streams.
    train_ds = make_dataset(train_frame, classes, size, batch, augment=cfg["augment"], shuffle=True, seed=seed,
                            first_epoch=first_epoch, epochs=epochs)
    with strategy().scope():
        if state:
            print(f"resuming from the checkpoint of epoch {state['epoch']}")
            model = keras.models.load_model(checkpoints.directory / state["model"], safe_mode=True)
            restore_seed_states(model, state["seed_states"])
        else:
            model = build_model(classes, size, cfg["weights"], float(cfg["dropout"]), int(cfg["dense_units"]),
                                cfg["bn_momentum"])
            model.compile(optimizer=keras.optimizers.Adam(float(cfg["learning_rate"])),
                          loss="categorical_crossentropy", metrics=["accuracy"])

    tracker = tracking.Tracker()
    experiment_id = tracker.call("setup", tracking.configure, tracking_cfg["experiment"])
    mlflow.set_system_metrics_sampling_interval(5)
    run = tracker.call("start run", mlflow.start_run, run_id=state["run_id"] if state and state["run_id"] else None,
                       experiment_id=experiment_id, run_name=os.environ.get("DVC_EXP_NAME") or None,
                       log_system_metrics=True) if experiment_id else None
    run_id = run.info.run_id if run else None
    if run and not state:
        lineage_tags, lineage_params = tracking.data_lineage()
        logged = {**flatten({"train": cfg, "resize": resize_cfg, "tracking": tracking_cfg}), "seed": seed,
                  "classes": ",".join(classes), **lineage_params}
        tracker.call("log params", mlflow.log_params, logged)
        tracker.call("set tags", mlflow.set_tags, {
            **lineage_tags, **devices, "mlflow.source.git.commit": tracking.git_commit(),
            "dvc.exp_name": os.environ.get("DVC_EXP_NAME", ""), "images.train": len(train_frame),
            "images.val": len(val_frame)})

    history = list(state["history"]) if state else []
    clock = [time.perf_counter()]  # wall time at each epoch's end (training, validation, checkpoint)

    def on_epoch_end(model: keras.Model, epoch: int, logs: dict[str, float]) -> None:
        clock.append(time.perf_counter())
        history.append({"epoch": epoch, **{k: float(v) for k, v in logs.items()}})
        if run_id:
            tracker.call("log metrics", mlflow.log_metrics, {**{k: float(v) for k, v in logs.items()},
                                                             "epoch_seconds": clock[-1] - clock[-2]}, step=epoch)
        if cfg["checkpoint"]:
            checkpoints.save(model, epoch, history, run_id)

    if first_epoch < epochs:  # train_ds holds epochs first_epoch..epochs-1 back to back; it shuffles itself
        model.fit(train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=first_epoch, verbose=2,
                  steps_per_epoch=math.ceil(len(train_frame) / batch), callbacks=[epoch_callback(on_epoch_end)],
                  shuffle=False)

    if cfg["recalibrate_bn"]:
        before = model.evaluate(val_ds, return_dict=True, verbose=0)
        steps = recalibrate_batchnorm(model, make_dataset(train_frame, classes, size, batch))
        after = model.evaluate(val_ds, return_dict=True, verbose=0)
        print(f"BatchNorm statistics re-estimated over {steps} training batches: val accuracy "
              f"{before['accuracy']:.3f} -> {after['accuracy']:.3f}")
        if run_id:
            tracker.call("log metrics", mlflow.log_metrics, {
                "val_accuracy_before_bn_recalibration": before["accuracy"],
                "val_accuracy_after_bn_recalibration": after["accuracy"],
                "val_loss_after_bn_recalibration": after["loss"]})

    inference = inference_copy(model, classes)
    with atomic_path(MODELS / "coronet.keras", suffix=".keras") as tmp:
        inference.save(tmp)
    frame = pd.DataFrame(history).reindex(columns=HISTORY_COLUMNS)
    write_csv(MODELS / "history.csv", frame)
    training_curves(frame, MODELS / "training_curves.png")
    meta = {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": tracking.tracking_uri(),
            "train": cfg, "seed": seed, "precision": devices["precision"],
            "model": {"classes": classes, "image_size": size, "weights": str(cfg["weights"]),
                      "resize": {"size": int(resize_cfg["size"]), "mode": resize_cfg["mode"]}}}
    if run_id:
        from coronet.serving import log_pyfunc

        tracker.call("log artifacts", mlflow.log_artifact, str(MODELS / "training_curves.png"), "figures")
        tracker.call("log artifacts", mlflow.log_artifact, str(MODELS / "history.csv"))
        write_json(MODELS / "run.json", meta)
        logged = tracker.call("log model", log_pyfunc, MODELS / "coronet.keras", MODELS / "run.json", serving_config)
        meta["model_uri"] = logged.model_uri if logged else None
        tracker.call("end run", mlflow.end_run)
    meta["tracking_errors"] = tracker.errors
    meta["throughput"] = throughput(clock, len(train_frame))
    write_json(MODELS / "run.json", meta)
    checkpoints.clear()
    if meta["throughput"]:
        print(f"training speed: {meta['throughput']['images_per_s']} images/s over {meta['throughput']['epochs']} "
              f"epochs in {devices['precision']}")
    print(f"model saved to {MODELS / 'coronet.keras'}; MLflow run {run_id or 'not recorded'}")
    return 0


if __name__ == "__main__":
    run_stage(main)
