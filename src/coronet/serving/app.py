"""``coronet app`` (``make app``): the page for people who judge whether the model is worth a study.

One or several X-rays in (PNG, JPEG or DICOM); out, for each: the class probabilities in order, the grouped
view and the screened class, the Grad-CAM overlay of the predicted class (or any class picked), and the
input checks, each beside what this model's own stress tests measured for it. The page says which model
answers and what its evaluation found, and that it is research software, not a medical device.

It computes nothing of its own: decoding, checks, model input, answers and overlays are
:mod:`coronet.serving.predict`'s, the model is the one ``coronet predict`` would pick
(:func:`coronet.serving.models.pick`). It listens on 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import Any

from coronet.console import port, port_is_free, positive_int, positive_number
from coronet.errors import UserError
from coronet.evaluation.controls import free_rates
from coronet.evaluation.intervals import percent, shown
from coronet.imaging import checks

PREDICTED = "the predicted class"
MAX_IMAGES = 8



def _ci(interval: dict[str, Any] | None, n: int | None = None) -> str:
    return shown(interval, n, digits=0, unit="%")


def model_summary(served: Any) -> str:
    """Which model answers: its name or file, training run, date, and the headline test metrics with
    their intervals (from its evaluation), as Markdown."""
    head, evidence = served.headline, served.evidence
    screening = served.classifier.screening
    lines = [f"**Model:** {served.name}" + (f" · training run `{served.run_id}`" if served.run_id else "")
             + (f" · {served.created}" if served.created else "")]
    if head and evidence:
        ci, n = evidence.intervals, head.n_test
        parts = [f"accuracy {percent(head.accuracy)}{_ci(ci['accuracy'], n)} on {n} test images",
                 f"macro F1 {percent(head.macro_f1)}{_ci(ci['macro_f1'], n)}"]
        if screening and head.screening == screening:
            recall = ci["per_class"][screening]["recall"]
            parts.append(f"{screening} sensitivity {percent(head.sensitivity)}{_ci(recall)}")
        if controls := evidence.controls.get("called_screening"):
            rate = percent(controls["rate"]) + _ci(controls["interval"])
            parts.append(f"same-source controls called {screening}: {rate}")
        external = evidence.external
        if "sensitivity" in external:  # a hospital it never saw
            sources = ", ".join(external["by_source"])
            twin = served.classifier.trained_on is not None and served.classifier.trained_on.synthetic
            parts.append(f"on a hospital it never saw ({sources}{': its drawn twin' if twin else ''}): {screening} "
                         f"sensitivity {percent(external['sensitivity']['rate'])}"
                         f"{_ci(external['sensitivity']['interval'])}, specificity "
                         f"{percent(external['specificity']['rate'])}{_ci(external['specificity']['interval'])}"
                         + "".join(f" ({note})" for note in free_rates(external)))
        for group, entry in evidence.scored.get("by_group", {}).items():  # an adult's pneumonia
            called = entry["called_screening"]
            parts.append(f"{', '.join(entry['sources'])} {group} films (only scored, never trained on) called "
                         f"{screening}: {percent(called['rate'])}{_ci(called['interval'])} of {called['n']}")
        parts.append(f"calibration error (ECE) {head.ece:.3f}" if head.ece is not None else "no calibration error")
        lines.append("**Its test results:** " + "; ".join(parts) + ".")
    else:
        lines.append("No evaluation was found beside this model: no test results to show.")
    return "\n\n".join(lines)


def image_report(name: str, row: dict[str, Any], findings: list[checks.Finding], served: Any) -> str:
    """One image's answer as Markdown: probabilities in order, the grouped view, the checks."""
    classifier = served.classifier
    if row["error"]:
        return f"### {name}\n**Not classified:** {row['error']}\n"
    ranked = sorted(classifier.classes, key=lambda c: -row[f"p_{c}"])
    table = ["| class | probability |", "|---|---|"] + [f"| {c} | {percent(row[f'p_{c}'])} |" for c in ranked]
    confidence = " · low confidence" if row["low_confidence"] else ""
    lines = [f"### {name}", f"**Answer: {row['predicted']}** ({percent(row['p_' + row['predicted']])}){confidence}", "",
             *table]
    if classifier.groups:
        grouped = ", ".join(f"{g} {percent(row[f'pg_{g}'])}" for g in classifier.groups)
        lines.append(f"\nGrouped view: **{row['predicted_group']}** ({grouped})")
    if classifier.screening:
        lines.append(f"\n{classifier.screening} probability: **{percent(row[f'p_{classifier.screening}'])}**")
    warned = [f for f in findings if f.severity == "warn"]
    if warned:
        lines.append("\n**Input checks: what to distrust**")
        for finding in warned:
            effect = checks.measured_effect(finding, served.stress, classifier.resize_size)
            lines.append(f"- {finding.message}" + (f": {effect}" if effect else ""))
    else:
        lines.append("\nInput checks: no border, burned-in marker or low resolution found.")
    lines.append(f"\n*{checks.BLIND_SPOTS}*")
    return "\n".join(lines) + "\n"


def analyse(served: Any, files: list[str] | None, explain: str, max_images: int, low_confidence: float
            ) -> tuple[str, list[tuple[Any, str]], list[dict[str, Any]]]:
    """The click handler: (the report, the overlays with captions, the answers as data). Every failure is
    that image's message; nothing a user uploads stops the server. Uploads are deleted once answered, those
    over ``max_images`` at once."""
    files = list(files or [])
    if not files:
        return "Drop one or more chest X-rays (PNG, JPEG or DICOM) above, then press **Classify**.", [], []
    notes = []
    if len(files) > max_images:
        notes.append(f"**{len(files)} images were sent; the first {max_images} are classified** (at most "
                     f"{max_images} per request: send the others next).")
        forget_uploads(files[max_images:])
        files = files[:max_images]
    try:
        return _answer(served, files, explain, max_images, low_confidence, notes)
    finally:
        forget_uploads(files)


def _answer(served: Any, files: list[str], explain: str, max_images: int, low_confidence: float, notes: list[str]
            ) -> tuple[str, list[tuple[Any, str]], list[dict[str, Any]]]:
    from coronet.serving.predict import answer, classify, gradcam_overlay, read_file

    classifier = served.classifier
    loaders = [functools.partial(read_file, Path(f)) for f in files]
    reports, overlays, answers = [], [], []
    for path, item in zip(files, classify(classifier, loaders, batch_size=max_images), strict=True):
        name = Path(path).name
        row = answer(classifier, item, low_confidence)
        if item.probabilities is not None:
            try:
                picture, empty = gradcam_overlay(classifier, item, None if explain == PREDICTED else explain)
                overlays.append((picture, f"{name}: Grad-CAM of {explain if explain != PREDICTED else row['predicted']}"
                                 + (" (empty map: no evidence located)" if empty else "")))
                row["gradcam_empty"] = empty
            except Exception as exc:  # an overlay that fails costs the picture, not the answer
                row["gradcam_error"] = f"{type(exc).__name__}: {exc}"
        reports.append(image_report(name, row, item.findings, served))
        answers.append({"file": name, **row})
    return "\n".join([*notes, *reports]), overlays, answers


def build(served: Any, max_images: int = MAX_IMAGES, low_confidence: float = 0.5) -> Any:
    """The page (a Gradio Blocks app); its API (``/classify``) is what gradio_client calls."""
    import gradio as gr

    from coronet.serving.models import DISCLAIMER, trained_on

    classes = served.classifier.classes
    with gr.Blocks(title="CoroNet", delete_cache=(CACHE_AGE_S, CACHE_AGE_S)) as page:
        gr.Markdown(f"# CoroNet: chest X-ray classification\n\n> **{DISCLAIMER}**\n>\n> **{trained_on(served)}** "
                    "Read what to distrust below each answer.", elem_id="disclaimer")
        gr.Markdown(model_summary(served), elem_id="model")
        with gr.Row():
            files = gr.File(label=f"Chest X-rays (PNG, JPEG, DICOM; up to {max_images})", file_count="multiple",
                            type="filepath", elem_id="upload")
            with gr.Column():
                explain = gr.Dropdown([PREDICTED, *classes], value=PREDICTED, label="Grad-CAM: where the model "
                                      "looked for", elem_id="explain")
                run = gr.Button("Classify", variant="primary", elem_id="classify")
        with gr.Row():
            report = gr.Markdown(elem_id="report")
            gallery = gr.Gallery(label="Grad-CAM overlays", columns=1, format="png", object_fit="contain",
                                 height="auto", elem_id="overlays")  # the whole overlay, never cropped
        data = gr.JSON(label="Answers as data (what `coronet predict --format json` gives)", elem_id="answers")
        run.click(lambda f, e: analyse(served, f, e, max_images, low_confidence), [files, explain],
                  [report, gallery, data], api_name="classify")
    return page


FOLDER_PREFIX = "coronet-app-"
# Gradio keeps what a page sent back (overlays) in its cache; older than this, it is removed while the page runs.
CACHE_AGE_S = 600


def private_folder() -> Path:
    """A folder for this page's uploads and overlays, readable by this user alone (0700, files 0600): the
    images are patients'. Gradio writes there (GRADIO_TEMP_DIR, read when Gradio is imported). Its name
    carries this process's id, so that a later page can tell it from the folder of a page still running."""
    folder = Path(tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-"))
    os.umask(0o077)
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    return folder


def sweep_orphans(parent: Path | None = None) -> int:
    """Removes this user's page folders whose page is gone (killed with kill -9, a crash, a power cut): they
    hold patients' images. Returns how many."""
    removed = 0
    for folder in Path(parent or tempfile.gettempdir()).glob(f"{FOLDER_PREFIX}*"):
        try:
            pid = int(folder.name.removeprefix(FOLDER_PREFIX).split("-")[0])
            if folder.stat().st_uid != os.getuid() or not folder.is_dir():
                continue
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
        except OSError:  # alive, another user's: not ours to touch
            continue
    return removed


def forget_uploads(files: list[str]) -> None:
    """An upload is read once, to answer it: then it goes, so one client cannot pile films up on the server."""
    for name in files:
        Path(name).unlink(missing_ok=True)


def _port_taken(args: argparse.Namespace) -> UserError:
    return UserError(f"cannot listen on {args.host}:{args.port}: the port is in use (or not this machine's address); "
                     "choose another with --port (make app PORT=...)")


def run(args: argparse.Namespace) -> int:
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no calls home
    if not port_is_free(args.port, args.host):  # said at once, not after TensorFlow, Gradio and the model load
        raise _port_taken(args)
    from coronet.model.runtime import import_tensorflow_quietly
    from coronet.params import ServingParams, load_params
    from coronet.serving import models

    import_tensorflow_quietly()
    served = models.pick(args.model, args.model_uri, models.registered_name())
    serving = ServingParams.parse(load_params()) if Path("params.yaml").is_file() else None
    max_mb = args.max_upload_mb or (serving.max_upload_mb if serving else 40)
    low = serving.low_confidence if serving else 0.5
    uploads = private_folder()
    if removed := sweep_orphans(uploads.parent):
        print(f"removed {removed} folder(s) of uploads left by pages that did not stop cleanly", file=sys.stderr)
    # SIGTERM (a service manager, `kill`) and SIGHUP (the terminal closed) end the page as Ctrl-C does, so the
    # uploads are removed either way.
    for stop in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop, lambda *_: sys.exit(0))
    try:
        page = build(served, args.max_images, low)
        try:
            page.launch(server_name=args.host, server_port=args.port, max_file_size=int(max_mb * 1024 * 1024),
                        show_error=True, footer_links=["api"], quiet=True, prevent_thread_lock=True)
        except OSError:  # Gradio: "Cannot find empty port ...": taken since the check above
            raise _port_taken(args) from None
        print(f"CoroNet page on http://{args.host}:{args.port} ({served.name}); Ctrl-C stops it.\n"
              f"{models.DISCLAIMER}\n{models.trained_on(served)}\nUploads and overlays: {uploads} (this user only; "
              "each upload deleted once answered, the folder when the page stops)", file=sys.stderr, flush=True)
        try:
            page.block_thread()
        except KeyboardInterrupt:
            pass
        finally:
            page.close()
    finally:
        shutil.rmtree(uploads, ignore_errors=True)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--model", help="a saved model (default models/coronet.keras, with run.json beside it)")
    source.add_argument("--model-uri", help="an MLflow model URI, e.g. models:/coronet@candidate")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this "
                        "machine only; behind a reverse proxy keep it so and let the proxy listen)")
    parser.add_argument("--port", type=port, default=7860, help="port (default 7860)")
    parser.add_argument("--max-images", type=positive_int, default=MAX_IMAGES,
                        help=f"images per request (default {MAX_IMAGES})")
    parser.add_argument("--max-upload-mb", type=positive_number,
                        help="largest file accepted (default params serving.max_upload_mb)")
    parser.set_defaults(run=run)
