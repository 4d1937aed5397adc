"""Stage train: fit CoroNet on the train split, watch the val split, track the run in MLflow."""

from __future__ import annotations

from coronet import paths
from coronet.errors import run_stage
from coronet.files import atomic_path, sha256_file
from coronet.model.checkpoints import Checkpoints, fingerprint, stage_dependencies
from coronet.model.dataset import balance_sources, load_split
from coronet.model.fit import fit
from coronet.model.network import backbone, inference_copy
from coronet.model.runtime import (
    describe_devices,
    import_tensorflow_quietly,
    resolve_precision,
    set_precision,
    set_seeds,
)
from coronet.params import ClassScheme, ResizeParams, TrackingParams, TrainParams, load_params, project_seed
from coronet.records import ModelContract, RunRecord, SourcesRecord, TrainingData
from coronet.tracking.store import shown_uri
from coronet.tracking.training import epoch_records, start_training_run


def main() -> int:
    params = load_params()
    cfg, scheme, seed = TrainParams.parse(params), ClassScheme.parse(params), project_seed(params)
    backbone(cfg.backbone, cfg.image_size)  # a name or size the backbone cannot take stops here, before any work
    resize, experiment = ResizeParams.parse(params), TrackingParams.parse(params, experiment_only=True).experiment
    set_seeds(seed, cfg.deterministic)
    devices = {**describe_devices(), "precision": resolve_precision(cfg.precision)}
    set_precision(devices["precision"])
    print(f"training in {devices['precision']} on {devices['device']}")
    frames = {split: load_split(split, paths.IMAGES_CSV, paths.SPLITS) for split in ("train", "val", "test")}
    if cfg.balance_sources:
        frames["train"] = balance_sources(frames["train"])
    checkpoints = Checkpoints(paths.CHECKPOINTS, fingerprint([cfg.as_dict(), scheme.classes, seed],
                                                             stage_dependencies("train")), cfg.checkpoint_every_s)
    state = checkpoints.load_state() if cfg.checkpoint else None

    trained_on = TrainingData(SourcesRecord.read(paths.SOURCES).source,
                              frames["train"]["source"].value_counts().sort_index().to_dict(), cfg.image_size,
                              cfg.weights, cfg.epochs)
    run = start_training_run(experiment, state and state["run_id"], cfg, resize, seed, scheme.classes, devices,
                             trained_on, frames)

    def save_checkpoint(model, history, seconds) -> None:
        if checkpoints.due():
            checkpoints.save(model, int(history[-1]["epoch"]), history, run.run_id)

    callbacks = epoch_records(run) + ([save_checkpoint] if cfg.checkpoint else [])
    fitted = fit(cfg, scheme.classes, seed, frames, checkpoints=checkpoints, state=state, on_epoch=callbacks)
    if fitted.recalibration:
        run.log_metrics({f"bn_recalibration/{k}": v for k, v in fitted.recalibration.items()})
    with atomic_path(paths.MODEL, suffix=".keras") as tmp:
        inference_copy(fitted.model, scheme.classes, cfg.backbone).save(tmp)
    run.end()
    speed = fitted.throughput(len(frames["train"]))
    RunRecord(run_id=run.run_id, experiment=experiment, tracking_uri=shown_uri(), tracking_errors=run.errors,
              train=cfg.as_dict(), seed=seed, precision=devices["precision"], throughput=speed,
              model=ModelContract(scheme.classes, scheme.groups, scheme.screening, cfg.image_size, cfg.weights,
                                  resize.size, resize.mode, sha256_file(paths.MODEL), len(scheme.classes),
                                  cfg.backbone),
              trained_on=trained_on).sealed().write(paths.RUN)
    checkpoints.clear()
    print(f"model saved to {paths.MODEL}; MLflow run {run.run_id or 'not recorded'}; "
          f"{speed['images_per_s'] if speed else '-'} images/s ({devices['precision']})")
    return 0


if __name__ == "__main__":
    import_tensorflow_quietly()  # before anything imports it: its start-up lines are not for our users
    run_stage(main, f"the newest saved epoch is in {paths.CHECKPOINTS} (train.checkpoint_every_s); `dvc repro` "
                    "continues from there")
