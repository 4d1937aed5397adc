"""The train stage's bookkeeping in one place: its MLflow run started (or the interrupted one resumed) with
the params, tags and datasets that say what it trained on, and what is recorded after every epoch (the
history table `dvc plots` draws, the MLflow curves)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from coronet import paths
from coronet.files import write_csv
from coronet.params import ResizeParams, TrainParams, flatten
from coronet.records import DataRecord, SourcesRecord, TrainingData
from coronet.tracking import lineage
from coronet.tracking.run import PipelineRun, epoch_curves, split_datasets

# models/history.csv, one row per finished epoch. Keras' CSVLogger would number epochs from 0 (MLflow's steps
# and the paper's Figure 5 count from 1) and append a half-written file after a crash; this table is rewritten
# whole, atomically, after every epoch.
HISTORY_COLUMNS = ["epoch", "loss", "accuracy", "val_loss", "val_accuracy"]


def start_training_run(experiment: str, resumed_run_id: str | None, cfg: TrainParams, resize: ResizeParams,
                       seed: int, classes: list[str], devices: dict[str, str], trained_on: TrainingData,
                       frames: dict[str, pd.DataFrame]) -> PipelineRun:
    """The training run in MLflow (``resumed_run_id``: the interrupted run a checkpoint continues, which already
    holds all this): the params, the devices, what it was trained on and one dataset per split."""
    run = PipelineRun(experiment)
    if run.start(resumed_run_id, lineage.run_name(), system_metrics=True) and not resumed_run_id:
        run.log_params({**flatten({"train": cfg.as_dict(), "resize": vars(resize)}), "seed": seed,
                        "classes": ",".join(classes), **lineage.data_params(DataRecord.read(paths.DATA_METRICS))})
        run.set_tags({**devices, **trained_on.tags(), "mlflow.source.git.commit": lineage.git_commit(),
                      "mlflow.note.content": trained_on.statement(),
                      **{f"images.{k}": len(v) for k, v in frames.items()}})
        digests = lineage.data_digests(paths.IMAGES_CSV, paths.SPLITS)
        run.log_inputs(split_datasets(frames, digests, SourcesRecord.read(paths.SOURCES).archives))
    return run


def epoch_records(run: PipelineRun, history_path: Path = paths.HISTORY) -> list[Callable[..., None]]:
    """After every epoch (``coronet.model.fit``'s callbacks): the history table rewritten, so `dvc plots show`
    follows a run under way, and the epoch's curves and wall time logged to MLflow at its step."""

    def write_history(model: Any, history: list[dict[str, float]], seconds: float) -> None:
        write_csv(history_path, pd.DataFrame(history).reindex(columns=HISTORY_COLUMNS))

    def log_curves(model: Any, history: list[dict[str, float]], seconds: float) -> None:
        logs = {k: v for k, v in history[-1].items() if k != "epoch"}
        run.log_metrics(epoch_curves(logs, seconds), step=int(history[-1]["epoch"]))

    return [write_history, log_curves]
