"""The evaluate stage's prediction tables (metrics/*.csv): one row per film, the columns that say which film it
is, then ``predicted`` and ``p_<class>`` in the class order. Each table's column list is here once, for its
writer (:func:`coronet.evaluation.steps.predict_all`) and for everything that reads it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from coronet import paths
from coronet.errors import DataError
from coronet.files import write_csv


@dataclass(frozen=True)
class PredictionTable:
    path: Path
    keys: tuple[str, ...]  # the film's own columns, from the image index; read as text ("" stays "", not NaN)

    def columns(self, classes: list[str]) -> list[str]:
        return [*self.keys, "predicted", *(f"p_{c}" for c in classes)]

    def write(self, images: pd.DataFrame, probabilities: np.ndarray, classes: list[str]) -> None:
        """``images``' key columns, the most probable class and each class's probability (6 decimals)."""
        frame = pd.DataFrame({c: images[c].to_numpy() for c in self.keys})
        frame["predicted"] = [classes[i] for i in probabilities.argmax(axis=1)] if len(frame) else []
        for i, name in enumerate(classes):
            frame[f"p_{name}"] = probabilities[:, i].round(6)
        write_csv(self.path, frame[self.columns(classes)])

    def read(self, classes: list[str], project: Path = Path()) -> pd.DataFrame:
        """The table (of the project folder ``project``) with its columns checked: one missing is one error
        naming the file."""
        path = project / self.path
        frame = pd.read_csv(path, dtype={c: str for c in (*self.keys, "predicted")}, keep_default_na=False)
        missing = [c for c in self.columns(classes) if c not in frame.columns]
        if missing:
            raise DataError(f"{path} lacks the columns {', '.join(missing)}: it was written by other code or for other "
                            "classes; rerun the evaluate stage (dvc repro)")
        return frame


PREDICTIONS = PredictionTable(paths.PREDICTIONS, ("id", "label"))  # the test split: every metric comes from it
CONTROLS = PredictionTable(paths.CONTROLS, ("id", "label", "source", "finding"))  # same-source controls
EXTERNAL = PredictionTable(paths.EXTERNAL, ("id", "label", "source", "finding"))  # hospitals never trained on
SCORED = PredictionTable(paths.SCORED, ("id", "source", "finding", "group", "age"))  # scored against a group only
ALL = (PREDICTIONS, CONTROLS, EXTERNAL, SCORED)
