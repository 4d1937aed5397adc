"""``coronet`` command line: ``coronet predict PATH...`` classifies chest X-rays (PNG, JPEG, DICOM);
``coronet compare`` shows experiments side by side."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

DISCLAIMER = "CoroNet is research software, not a medical device: do not use its output for diagnosis."


def collect_files(paths: list[str]) -> list[Path]:
    """Files as given, and every file under a folder (recursively, sorted); hidden files skipped."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if p.is_file() and not p.name.startswith("."))
        else:
            files.append(path)  # a missing one is reported per file, not here
    return files


DEFAULT_MODEL = Path("models/coronet.keras")


def load_registered(model_uri: str) -> Any:
    import logging

    import mlflow
    from mlflow.exceptions import MlflowException

    from coronet import tracking

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # its INFO lines are not for this command's users
    mlflow.set_tracking_uri(tracking.tracking_uri())
    try:
        return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().classifier
    except MlflowException as exc:
        raise ValueError(f"{model_uri} ({tracking.tracking_uri()}): {exc.message}") from exc


def load_classifier(model: str | None, model_uri: str | None) -> Any:
    """--model, --model-uri, else the pipeline's models/coronet.keras, else (after `make demo`, whose
    experiment ran in a temporary copy) the registry's @candidate in this project's MLflow store."""
    from coronet.predict import Classifier

    if model_uri:
        return load_registered(model_uri)
    if model or DEFAULT_MODEL.is_file():
        return Classifier.load(model or DEFAULT_MODEL)
    from coronet import tracking

    name = "coronet"
    if Path("params.yaml").is_file():
        from coronet.params import load_params

        name = load_params()["tracking"]["registered_model"]
    uri, store = f"models:/{name}@candidate", tracking.tracking_uri()
    try:
        if store.startswith("sqlite:///") and not Path(store.removeprefix("sqlite:///")).is_file():
            raise ValueError(store)  # no store here: do not create an empty one
        classifier = load_registered(uri)
    except ValueError:
        raise ValueError(
            f"no model: {DEFAULT_MODEL} is not here and {store} has no {uri}. Train one "
            "(`dvc repro`), fetch this version's (`dvc pull`), bring in an experiment's (`dvc exp apply NAME`; "
            "`dvc exp show` lists them) or name one with --model PATH or --model-uri URI") from None
    print(f"using {uri} from {store} ({DEFAULT_MODEL} is not here)", file=sys.stderr)
    return classifier


def render(rows: list[dict[str, Any]], fmt: str, classes: list[str], groups: dict[str, list[str]]) -> str:
    columns = ["file", "predicted", *[f"p_{c}" for c in classes],
               *(["predicted_group", *[f"pg_{g}" for g in groups]] if groups else []), "error"]
    frame = pd.DataFrame(rows).reindex(columns=columns)
    if fmt == "json":
        return json.dumps([{k: v for k, v in r.items() if not (isinstance(v, float) and np.isnan(v))}
                           for r in frame.to_dict(orient="records")], indent=2)
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    shown = frame[["file", "predicted", *[f"p_{c}" for c in classes], "error"]].fillna("")
    return shown.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (a usage error, exit 2, otherwise)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def predict_command(args: argparse.Namespace) -> int:
    files = collect_files(args.paths)
    if not files:
        print("error: no files to classify", file=sys.stderr)
        return 2
    from coronet.console import import_tensorflow_quietly

    import_tensorflow_quietly()
    try:
        classifier = load_classifier(args.model, args.model_uri)
    except (OSError, ValueError) as exc:
        print(f"error: cannot load the model: {exc}", file=sys.stderr)
        return 2
    if args.gradcam_class and args.gradcam_class not in classifier.classes:
        print(f"error: --gradcam-class must be one of {classifier.classes}", file=sys.stderr)
        return 2
    gradcam_dir = Path(args.gradcam) if args.gradcam else None
    from coronet.predict import predict_files

    rows = predict_files(classifier, files, args.batch_size, gradcam_dir, args.gradcam_class)
    text = render(rows, args.format, classifier.classes, classifier.groups)
    if args.output:
        from coronet.files import atomic_path

        try:
            with atomic_path(args.output) as tmp:
                tmp.write_text(text + ("" if text.endswith("\n") else "\n"))
        except OSError as exc:
            print(text)  # the results are not lost
            print(f"error: cannot write {args.output}: {exc}; the results are printed above", file=sys.stderr)
            return 2
    else:
        print(text)
    failed = [r for r in rows if r["error"]]
    print(DISCLAIMER, file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(rows)} file(s) failed; see the error column", file=sys.stderr)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="coronet", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="classify chest X-ray images (PNG, JPEG, DICOM)")
    predict.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    source = predict.add_mutually_exclusive_group()
    source.add_argument("--model", help="a saved model (default models/coronet.keras, with run.json beside it)")
    source.add_argument("--model-uri", help="an MLflow model URI, e.g. models:/coronet@champion")
    predict.add_argument("--format", choices=["table", "csv", "json"], default="table")
    predict.add_argument("--output", help="write the results to this file instead of the terminal")
    predict.add_argument("--gradcam", metavar="DIR", help="write a Grad-CAM overlay PNG per image here")
    predict.add_argument("--gradcam-class", help="explain this class instead of the predicted one")
    predict.add_argument("--batch-size", type=positive_int, default=32, help="images per model call (default 32)")
    compare = commands.add_parser("compare", help="experiments side by side: params that differ, headline metrics")
    compare.add_argument("--rev", action="append", help="the commit whose experiments to show (default HEAD)")
    compare.add_argument("-n", "--num", type=positive_int, default=1, help="also the experiments of N-1 older commits")
    args = parser.parse_args(argv)
    if args.command == "compare":
        from coronet.compare import main as compare_main

        print(compare_main(args.rev, args.num))
        return 0
    return predict_command(args)


if __name__ == "__main__":
    sys.exit(main())
