"""The pipeline's files, named once, as dvc.yaml declares them (a test checks each is declared there).
Stage scripts pass them to the library explicitly, so reading a stage shows what it reads and writes."""

from __future__ import annotations

from pathlib import Path

RAW = Path("data/raw")  # download: every source's archive, and where each came from
ARCHIVES = RAW / "archives"
SOURCES = RAW / "sources.json"
INTERIM = Path("data/interim")  # merge
MANIFEST = INTERIM / "manifest.csv"
REJECTED = INTERIM / "rejected.csv"
NEAR_DUPLICATES = INTERIM / "near_duplicates.csv"
IMAGE_STATS = INTERIM / "image_stats.csv"
EXTRACTED = INTERIM / "extracted.zip"  # the chosen films of tar parts (NIH's), copied out in one pass per part
PROCESSED = Path("data/processed")  # resize, split
IMAGES = PROCESSED / "images"
IMAGES_CSV = PROCESSED / "images.csv"
SPLITS = PROCESSED / "splits.csv"
DATA_METRICS = Path("metrics/data.json")
MODELS = Path("models")  # train, package
MODEL = MODELS / "coronet.keras"
RUN = MODELS / "run.json"
HISTORY = MODELS / "history.csv"
CHECKPOINTS = MODELS / "checkpoints"
PACKAGE = MODELS / "package.json"
METRICS = Path("metrics")  # evaluate
HEADLINE = METRICS / "metrics.json"
DETAILS = METRICS / "details.json"
EVIDENCE = METRICS / "evidence.json"
STRESS = METRICS / "stress.json"
PREDICTIONS = METRICS / "predictions.csv"
CONTROLS = METRICS / "controls.csv"
EXTERNAL = METRICS / "external.csv"
SCORED = METRICS / "scored.csv"  # the films only scored against a class group (an adult's pneumonia)
MODEL_CARD = METRICS / "model_card.md"
FIGURES = METRICS / "figures"
CURVES = METRICS / "curves"
