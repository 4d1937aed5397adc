"""``coronet`` command line: ``coronet predict PATH...`` classifies chest X-rays (PNG, JPEG, DICOM)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

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


def load_classifier(model: str | None, model_uri: str | None) -> Any:
    from coronet.predict import Classifier

    if model_uri:
        import mlflow
        from mlflow.exceptions import MlflowException

        from coronet import tracking

        mlflow.set_tracking_uri(tracking.tracking_uri())
        try:
            return mlflow.pyfunc.load_model(model_uri).unwrap_python_model().classifier
        except MlflowException as exc:
            raise ValueError(f"{model_uri} ({tracking.tracking_uri()}): {exc.message}") from exc
    return Classifier.load(model or "models/coronet.keras")


def _prepare(classifier: Any, path: Path) -> tuple[np.ndarray | None, str]:
    """(model input, "") or (None, the reason this file cannot be classified)."""
    from coronet.images import ImageDecodeError

    try:
        return classifier.prepare(path.read_bytes()), ""
    except FileNotFoundError:
        return None, "no such file"
    except IsADirectoryError:
        return None, "is a directory"
    except PermissionError:
        return None, "permission denied"
    except ImageDecodeError as exc:
        return None, str(exc)


def predict_files(classifier: Any, files: list[Path], batch_size: int, gradcam_dir: Path | None = None,
                  gradcam_class: str | None = None) -> list[dict[str, Any]]:
    """One result row per file, in order; a file that fails gets its reason in ``error``.

    Decoding runs in threads (Pillow releases the GIL) one batch ahead of the model, so at most two
    batches of inputs are held however many files there are.
    """
    from coronet.predict import three_class

    classes = classifier.classes
    rows: list[dict[str, Any]] = []
    chunks = [files[i : i + batch_size] for i in range(0, len(files), batch_size)]
    bar = tqdm(total=len(files), desc="predict", unit="img", disable=len(files) < 2 * batch_size)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        ahead = [pool.submit(_prepare, classifier, p) for p in chunks[0]] if chunks else []
        for k, chunk in enumerate(chunks):
            prepared = [future.result() for future in ahead]
            ahead = [pool.submit(_prepare, classifier, p) for p in chunks[k + 1]] if k + 1 < len(chunks) else []
            batch_rows = [{"file": str(path), "predicted": "", "error": error}
                          for path, (_, error) in zip(chunk, prepared, strict=True)]
            good = [(row, array) for row, (array, _) in zip(batch_rows, prepared, strict=True) if array is not None]
            if good:
                probs = classifier.probabilities(np.stack([array for _, array in good]))
                for (row, array), p in zip(good, probs, strict=True):
                    row.update({f"p_{c}": round(float(v), 6) for c, v in zip(classes, p, strict=True)})
                    row["predicted"] = classes[int(np.argmax(p))]
                    merged = three_class(p, classes)
                    row.update({f"p3_{name}": round(v, 6) for name, v in merged.items()})
                    row["predicted_3class"] = max(merged, key=merged.get)
                    if gradcam_dir is not None:
                        write_gradcam(classifier, array, Path(row["file"]), gradcam_dir, gradcam_class)
            rows += batch_rows
            bar.update(len(chunk))
    bar.close()
    return rows


def write_gradcam(classifier: Any, array: np.ndarray, source: Path, out_dir: Path, class_name: str | None) -> Path:
    from PIL import Image

    from coronet.files import atomic_path
    from coronet.gradcam import gradcam, overlay

    index = classifier.classes.index(class_name) if class_name else None
    heatmap, _ = gradcam(classifier.model, array, index)
    picture = overlay(array[..., 0].astype(np.uint8), heatmap)
    target = out_dir / f"{source.stem}_gradcam.png"
    with atomic_path(target, suffix=".png") as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
    return target


def render(rows: list[dict[str, Any]], fmt: str, classes: list[str]) -> str:
    columns = ["file", "predicted", *[f"p_{c}" for c in classes], "predicted_3class",
               *[f"p3_{c}" for c in ("covid", "normal", "pneumonia")], "error"]
    frame = pd.DataFrame(rows).reindex(columns=columns)
    if fmt == "json":
        return json.dumps([{k: v for k, v in r.items() if not (isinstance(v, float) and np.isnan(v))}
                           for r in frame.to_dict(orient="records")], indent=2)
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    shown = frame[["file", "predicted", *[f"p_{c}" for c in classes], "error"]].fillna("")
    return shown.to_string(index=False, float_format=lambda v: f"{v:.3f}")


def predict_command(args: argparse.Namespace) -> int:
    files = collect_files(args.paths)
    if not files:
        print("no files to classify", file=sys.stderr)
        return 2
    try:
        classifier = load_classifier(args.model, args.model_uri)
    except (OSError, ValueError) as exc:
        print(f"cannot load the model: {exc}", file=sys.stderr)
        return 2
    if args.gradcam_class and args.gradcam_class not in classifier.classes:
        print(f"--gradcam-class must be one of {classifier.classes}", file=sys.stderr)
        return 2
    gradcam_dir = Path(args.gradcam) if args.gradcam else None
    rows = predict_files(classifier, files, args.batch_size, gradcam_dir, args.gradcam_class)
    text = render(rows, args.format, classifier.classes)
    if args.output:
        from coronet.files import atomic_path

        with atomic_path(args.output) as tmp:
            tmp.write_text(text + ("" if text.endswith("\n") else "\n"))
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
    predict.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    return predict_command(args)


if __name__ == "__main__":
    sys.exit(main())
