"""``coronet`` command line: ``coronet predict PATH...`` classifies chest X-rays (PNG, JPEG, DICOM);
``coronet compare`` shows experiments side by side; ``coronet study`` runs the shortcut study;
``coronet app`` serves the page; ``coronet ui`` the MLflow UI on the training runs.

Exit codes: 0 done; 1 some inputs or outputs failed (each named); 2 a usage error, said in one line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from coronet.console import interactive, port, positive_int, probability
from coronet.errors import INTERRUPTED, UserError, debug


def collect_files(paths: list[str]) -> list[Path]:
    """Files as given, and every file under a folder (recursively, sorted); hidden files skipped. A
    symbolic link whose target is gone is kept: it is reported as such, not silently left out."""
    files: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            files += sorted(p for p in path.rglob("*") if (p.is_file() or (p.is_symlink() and not p.exists()))
                            and not p.name.startswith("."))
        else:
            files.append(path)  # a missing one is reported per file, not here
    return files


UI_PORT = 5000  # MLflow's own default; `make server` uses another (coronet.tracking.team_server)
FILE_WIDTH = 40  # the table's file column: long paths keep their end, where the file name is


def render(rows: list[dict[str, Any]], fmt: str, classes: list[str], groups: dict[str, list[str]],
           screening: str | None = None, wide: bool = False) -> str:
    """JSON and CSV carry every column of :func:`answer_columns` (the checks' sentences, the overlays' paths).
    The terminal table fits 120 columns: the answer, its probability, the screened class's probability, the
    group, the flags, the checks by name, errors when there are; ``wide`` shows every class and group."""
    from coronet.serving.predict import answer_columns

    columns = ["file", *answer_columns(classes, groups), *(["gradcam"] if any("gradcam" in r for r in rows) else [])]
    if fmt == "json":
        return json.dumps([{k: r.get(k) for k in columns if k in r} for r in rows], indent=2)  # null, not NaN
    frame = pd.DataFrame(rows).reindex(columns=columns)
    if fmt == "csv":
        return frame.to_csv(index=False, lineterminator="\n")
    shown = pd.DataFrame({"file": [f if len(f) <= FILE_WIDTH else "..." + f[3 - FILE_WIDTH:] for f in frame["file"]],
                          "predicted": frame["predicted"]})
    if wide:
        shown = shown.join(frame[[f"p_{c}" for c in classes]].set_axis(classes, axis=1))
        if groups:
            shown["group"] = frame["predicted_group"]
            shown = shown.join(frame[[f"pg_{g}" for g in groups]].set_axis([g.upper() for g in groups], axis=1))
    else:
        shown["p"] = [r[f"p_{r['predicted']}"] if r["predicted"] else None for r in rows]
        if screening:
            shown[f"p_{screening}"] = frame[f"p_{screening}"]
        if groups:
            shown["group"] = frame["predicted_group"]
    shown["confidence"] = ["low" if r.get("low_confidence") is True else "" for r in rows]
    shown["checks"] = [r.get("check_names", "") for r in rows]
    shown["error"] = frame["error"].fillna("")
    shown = shown.loc[:, [c for c in shown.columns if c not in {"checks", "error", "confidence"}
                          or shown[c].astype(str).str.len().gt(0).any()]]
    return shown.fillna("").to_string(index=False, float_format=lambda v: f"{v:.3f}")


def usable_folder(text: str) -> Path:
    """--gradcam DIR: a folder that exists or can be made, and can be written to; checked before any work."""
    path = Path(text)
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".coronet-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except FileExistsError:
        raise UserError(f"--gradcam {text}: that is a file, not a folder; name a folder for the overlays") from None
    except OSError as exc:
        raise UserError(f"--gradcam {text}: cannot write there ({exc.strerror or exc}); name a writable "
                        "folder") from None
    return path


def writable_file(text: str) -> None:
    """--output FILE: its folder exists and takes a file; checked before any work (classifying takes minutes)."""
    folder = Path(text).resolve().parent
    if Path(text).is_dir():
        raise UserError(f"--output {text}: that is a folder; name a file")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".coronet-write-test"):
            pass
    except OSError as exc:
        raise UserError(f"--output {text}: cannot write in {folder} ({exc.strerror or exc}); name a writable "
                        "place") from None


def low_confidence_default() -> float:
    """params serving.low_confidence in a project, else 0.5: the page and the served model flag the same answers."""
    if Path("params.yaml").is_file():
        from coronet.params import ServingParams, load_params

        return ServingParams.parse(load_params()).low_confidence
    return 0.5


def predict_command(args: argparse.Namespace) -> int:
    files = collect_files(args.paths)
    if not files:
        raise UserError("no files to classify")
    if args.output:
        writable_file(args.output)
    if args.low_confidence is None:
        args.low_confidence = low_confidence_default()
    gradcam_dir = usable_folder(args.gradcam) if args.gradcam else None
    if interactive():  # seconds pass before the first answer (TensorFlow, the model, its first call): say why
        print(f"loading the model to classify {len(files)} file(s) ...", file=sys.stderr, flush=True)
    from coronet.model.runtime import import_tensorflow_quietly

    import_tensorflow_quietly()
    from coronet.serving import models
    from coronet.serving.predict import predict_files

    served = models.pick(args.model, args.model_uri, models.registered_name())
    classifier = served.classifier
    if args.gradcam_class and args.gradcam_class not in classifier.classes:
        raise UserError(f"--gradcam-class must be one of {classifier.classes}")
    rows, failed_overlays = predict_files(classifier, files, args.batch_size, args.low_confidence, gradcam_dir,
                                          args.gradcam_class)
    text = render(rows, args.format, classifier.classes, classifier.groups, classifier.screening, args.wide)
    code = 0
    if args.output:
        from coronet.files import atomic_path

        try:
            with atomic_path(args.output) as tmp:
                tmp.write_text(text + ("" if text.endswith("\n") else "\n"))
        except OSError as exc:
            print(text)  # the results are not lost
            print(f"error: cannot write {args.output}: {exc.strerror or exc}; the results are printed above",
                  file=sys.stderr)
            return 1
    else:
        print(text)
    failed = [r for r in rows if r["error"]]
    print(models.DISCLAIMER, file=sys.stderr)
    print(f"model: {served.name}. {models.trained_on(served)}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(rows)} file(s) failed; see the error column", file=sys.stderr)
        code = 1
    if failed_overlays:
        print(f"error: {len(failed_overlays)} Grad-CAM overlay(s) could not be written (first: {failed_overlays[0]}); "
              "the results are complete", file=sys.stderr)
        code = 1
    if gradcam_dir is not None and args.format == "table":
        print(f"Grad-CAM overlays: {gradcam_dir}", file=sys.stderr)
    empty = sum(str(r.get("gradcam", "")).endswith("(empty map)") for r in rows)
    if empty:
        print(f"warning: {empty} Grad-CAM map(s) are empty: nothing in the last convolutional layer speaks for the "
              "class shown, so the overlay cannot say where the model looked", file=sys.stderr)
    return code


def ui_command(args: argparse.Namespace) -> int:
    """The MLflow UI on this project's store, opened on the experiment's training runs: MLflow 3 shows an
    experiment's GenAI overview (traces, tokens) unless the address asks for its model-training view. Its
    address is printed once it answers; its own start-up chatter goes to a log file."""
    from coronet.console import port_is_free
    from coronet.params import TrackingParams, load_params
    from coronet.tracking import store as tracking
    from coronet.tracking.team_server import serve_until_stopped

    store = tracking.tracking_uri()
    db = tracking.sqlite_file(store)
    if db is not None and not db.is_file():
        raise UserError(f"no MLflow store yet ({tracking.shown_uri(store)}): run the pipeline first (make demo, "
                        "dvc repro)")
    tracking.check_store(store)
    served = store.startswith(("http://", "https://"))  # a tracking server is its own UI
    if not served and not port_is_free(args.port, args.host):
        raise UserError(f"{args.host}:{args.port} is in use (another MLflow UI, `make server`, a page?): stop it, "
                        f"or choose another port: coronet ui --port {args.port + 1} (make ui PORT={args.port + 1})")
    url = store.rstrip("/") + "/" if served else f"http://{args.host}:{args.port}/"
    if Path("params.yaml").is_file():
        import mlflow

        tracking.quiet_mlflow()
        mlflow.set_tracking_uri(store)
        found = mlflow.get_experiment_by_name(TrackingParams.parse(load_params(), experiment_only=True).experiment)
        if found is not None:
            url += f"#/experiments/{found.experiment_id}?workflowType=machine_learning"
    if served:
        print(f"MLflow UI of the tracking server: {url}")
        return 0
    command = [sys.executable, "-m", "mlflow", "ui", "--host", args.host, "--port", str(args.port),
               "--backend-store-uri", tracking.shown_uri(store)]
    return serve_until_stopped(command, f"http://{args.host}:{args.port}/health", f"MLflow UI: {url}")


def compare_command(args: argparse.Namespace) -> int:
    from coronet.experiments.compare import main as compare_main
    from coronet.experiments.study import table as study_table

    text, rows, screening = compare_main(args.rev, args.num)
    studied = study_table(rows, screening) if screening else ""  # the newest shortcut study, if any ran
    print(text + (f"\n\n{studied}" if studied else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="coronet", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    predict = commands.add_parser("predict", help="classify chest X-ray images (PNG, JPEG, DICOM)")
    predict.add_argument("paths", nargs="+", help="image files or folders (searched recursively)")
    source = predict.add_mutually_exclusive_group()
    source.add_argument("--model", help="a saved model (default models/coronet.keras, with run.json beside it)")
    source.add_argument("--model-uri", help="an MLflow model URI, e.g. models:/coronet@champion")
    predict.add_argument("--format", choices=["table", "csv", "json"], default="table")
    predict.add_argument("--wide", action="store_true", help="the table with every class's and group's probability")
    predict.add_argument("--output", help="write the results to this file instead of the terminal")
    predict.add_argument("--gradcam", metavar="DIR", help="write a Grad-CAM overlay PNG per image here")
    predict.add_argument("--gradcam-class", help="explain this class instead of the predicted one")
    predict.add_argument("--batch-size", type=positive_int, default=32, help="images per model call (default 32)")
    predict.add_argument("--low-confidence", type=probability, metavar="P",
                         help="flag answers whose top probability is under P (default params serving.low_confidence, "
                         "else 0.5)")
    compare = commands.add_parser("compare", help="experiments side by side: params that differ, headline metrics")
    compare.add_argument("--rev", action="append", help="the commit whose experiments to show (default HEAD)")
    compare.add_argument("-n", "--num", type=positive_int, default=1, help="also the experiments of N-1 older commits")
    ui = commands.add_parser("ui", help="the MLflow UI on this project's store, opened on its training runs")
    ui.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    ui.add_argument("--port", type=port, default=UI_PORT, help=f"port (default {UI_PORT})")
    ui.set_defaults(run=ui_command)
    from coronet.experiments.study import add_arguments as study_arguments
    from coronet.serving.app import add_arguments as app_arguments

    study_arguments(commands.add_parser("study", help="the shortcut study: baseline and mitigations, one table"))
    app_arguments(commands.add_parser("app", help="the page: classify X-rays in a browser"))
    args = parser.parse_args(argv)
    try:
        return args.run(args) if hasattr(args, "run") else (
            compare_command(args) if args.command == "compare" else predict_command(args))
    except UserError as exc:
        if debug():
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        if debug():
            raise
        print("interrupted: no results were written (an --output file is written whole or not at all)", file=sys.stderr)
        return INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
