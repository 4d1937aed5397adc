"""``coronet study`` (``make shortcut-study``): is it COVID-19 or the source, and which mitigation helps?

Queues the baseline, each mitigation and their combination as DVC experiments on the same data and seed
(``dvc exp run --queue``), runs them side by side (``dvc queue start -j N``), waits, and prints one table:
accuracy with its interval, COVID recall, the same-source control COVID-call rate, the frame flip rate to
COVID, accuracy with the lungs removed against chance, and the confound probe's AUC.

``--settings demo`` (the default) runs at the demo's CPU size on the synthetic sources; ``--settings
params`` runs params.yaml as it is (the paper's settings, the real sources). ``-S key=value`` adds
overrides to every variant (a mirror, say: ``-S download.mirror=file:///data/mirror``).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from coronet import paths
from coronet.console import positive_int
from coronet.errors import UserError
from coronet.evaluation.intervals import percent, shown
from coronet.records import EvidenceRecord, R, StressRecord

# Each mitigation as overrides of the baseline (params train.nuisance and merge.controls.role).
NUISANCE = {"train.nuisance.frame.p": 0.5, "train.nuisance.marker.p": 0.3, "train.nuisance.crop_zoom.p": 0.3,
            "train.nuisance.jpeg.p": 0.3, "train.nuisance.downscale.p": 0.3, "train.nuisance.gamma.p": 0.3}
MIXING = {"merge.controls.role": "train"}
# Only adult non-COVID films can teach that an adult film is not COVID-19: the controls with a class join their
# classes, and each class draws equally from every source that has it.
ADULTS = {**MIXING, "train.balance_sources": "true"}
# Adult normal films of a fourth hospital (NIH ChestX-ray14) in the normal class, each class drawing equally from
# its sources: what COVIDx did for COVID-Net. Its pneumonias are scored on every run where the source is on.
NIH = {"download.archives.nih.enabled": "true", "merge.sources.nih.role": "train", "train.balance_sources": "true"}
# Every other variant trains on the paper's sources (NIH off, whatever the settings say).
PAPER_SOURCES = {"download.archives.nih.enabled": "false"}
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": PAPER_SOURCES, "nuisance": {**PAPER_SOURCES, **NUISANCE}, "mixing": {**PAPER_SOURCES, **MIXING},
    "both": {**PAPER_SOURCES, **NUISANCE, **MIXING}, "adults": {**PAPER_SOURCES, **ADULTS}, "nih": NIH,
    "nih+nuisance": {**NIH, **NUISANCE}}
FRAME = ("frame_median", "0.2")  # the stress test the table reports: a 20% uniform frame
POLL_S = 3
QUEUE_STATUS_S = 60


def dvc(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``dvc`` with its output captured. Through a file, not a pipe: the workers `dvc queue start` leaves
    running inherit its output, and a pipe would hold this call until the last of them exits."""
    from coronet.experiments.demo import this_environment

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        code = subprocess.run([sys.executable, "-m", "dvc", *args], stdout=out, stderr=err, text=True,
                              env=this_environment()).returncode
        out.seek(0)
        err.seek(0)
        done = subprocess.CompletedProcess(args, code, out.read(), err.read())
    if check and done.returncode != 0:
        raise UserError(f"`dvc {' '.join(args)}` failed: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return done


def queue(prefix: str, variants: list[str], settings: dict[str, Any]) -> list[str]:
    """Queues one experiment per variant; returns their names."""
    names = []
    for variant in variants:
        name = f"{prefix}-{variant}"
        sets = {**settings, **VARIANTS[variant]}
        dvc("exp", "run", "--queue", "-n", name, *[f"-S{k}={v}" for k, v in sets.items()])
        names.append(name)
    return names


DONE = {"Success", "Failed"}
# DVC's executor states (dvc.repo.experiments.executor.base.TaskStatus), as its info files hold them.
STATES = {0: "Queued", 1: "Running", 2: "Running", 3: "Success", 4: "Failed", 5: "Failed", 6: "Success"}


def executors(root: Path) -> dict[str, dict[str, Any]]:
    """The queue's experiments as DVC's executors record them (``.dvc/tmp/exps/run/<id>/<id>.run``): name ->
    info. Reading these files costs nothing; ``dvc queue status`` is a new Python process importing DVC."""
    found = {}
    for info in (root / ".dvc/tmp/exps/run").glob("*/*.run"):
        try:
            record = json.loads(info.read_text())
        except (OSError, ValueError):  # being written
            continue
        if record.get("name"):
            found[record["name"]] = record
    return found


def progress(record: dict[str, Any] | None, epochs: int | None) -> str:
    """One experiment's state, with its epoch while it trains (the rows of its models/history.csv)."""
    if record is None:
        return "queued"
    state = STATES.get(record.get("status", 0), "Running").lower()
    history = Path(record.get("root_dir") or "") / "models/history.csv"
    if state == "running" and record.get("root_dir") and history.is_file():
        done = max(0, len(history.read_text().splitlines()) - 1)
        state += f" (epoch {done} of {epochs})" if epochs else f" ({done} epochs)"
    return state


def wait(names: list[str], jobs: int, epochs: int | None = None) -> dict[str, str]:
    """Starts the queue's workers and waits until every named experiment has finished; name -> status. It
    watches DVC's executor files every few seconds and asks ``dvc queue status`` only once a minute (the
    experiments it waits for need the CPU)."""
    dvc("queue", "start", "-j", str(jobs))
    started, last, asked = time.monotonic(), "", 0.0
    status = dict.fromkeys(names, "Queued")
    while True:
        infos = executors(Path.cwd())
        line = ", ".join(f"{n.rsplit('-', 1)[-1]} {progress(infos.get(n), epochs)}" for n in names)
        for name in names:
            if name in infos:
                status[name] = STATES.get(infos[name].get("status", 0), "Running")
        if time.monotonic() - asked > QUEUE_STATUS_S or all(s in DONE for s in status.values()):
            table, asked = dvc("queue", "status").stdout, time.monotonic()
            status = {n: next((row.split()[-1] for row in table.splitlines() if f" {n} " in f" {row} "), status[n])
                      for n in names}
            revive(table, jobs, waiting=sum(s == "Queued" for s in status.values()))
        if line != last:
            print(f"[{time.monotonic() - started:5.0f} s] {line}", flush=True)
            last = line
        if all(s in DONE for s in status.values()):
            return status
        time.sleep(POLL_S)


def revive(table: str, jobs: int, waiting: int) -> None:
    """Starts the queue's workers again when fewer than ``jobs`` run while experiments wait: DVC's workers share a
    file broker, and one can die reading a message the other is writing (JSONDecodeError; dvc#7903, kombu#1551),
    leaving the rest of the study to one worker. ``dvc queue start`` spawns only the workers that are missing."""
    found = re.search(r"Worker status: (\d+) active, (\d+) idle", table)
    if waiting and found and int(found[1]) + int(found[2]) < jobs:
        print(f"note: {jobs - int(found[1]) - int(found[2])} of the queue's workers stopped (DVC's file broker); "
              "starting them again", flush=True)
        dvc("queue", "start", "-j", str(jobs))


def failure(name: str) -> str:
    """Why an experiment failed: the last ``error:`` line of its log (ours or DVC's), else its last line."""
    log = dvc("queue", "logs", name, check=False).stdout
    lines = [line.strip() for line in log.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith(("error:", "error "))]
    return (errors or lines or ["no log"])[-1][:200]


def read(rev: str, record: type[R], path: Path, repo: str | None = None) -> R | None:
    """An evaluation record of an experiment commit, from git (metrics) or DVC's cache (evidence, stress);
    None for an experiment that failed before writing it. A damaged one is a RecordError naming it."""
    import dvc.api
    from dvc.exceptions import DvcException

    try:
        text = dvc.api.read(str(path), repo=repo, rev=rev, mode="rb")
    except (FileNotFoundError, DvcException):
        return None
    return record.loads(text, f"{path} of {rev[:7]}")



def _pct0(value: float | None) -> str:
    """The study table's shares: whole percents, "-" where there is none."""
    return percent(value, 0, "-")


def _ci(interval: dict[str, float] | None) -> str:
    return shown(interval, digits=0)


def row(name: str, rev: str, screening: str) -> dict[str, str]:
    evidence, stress = read(rev, EvidenceRecord, paths.EVIDENCE), read(rev, StressRecord, paths.STRESS)
    if not evidence or not stress:
        return {"experiment": name, "accuracy": "failed"}
    controls = evidence.controls
    called = controls.get("called_screening", {})
    frame = stress.transforms.get(FRAME[0], {}).get(FRAME[1], {})
    lungs = next(iter(stress.lungs.values()), {})
    probe = evidence.confound_probe["model_features"]
    return {
        "experiment": name,
        "n test": str(evidence.n_test),
        "accuracy (95% CI)": _pct0(evidence.accuracy) + _ci(evidence.intervals["accuracy"]),
        f"{screening} recall": _pct0(evidence.per_class[screening]["recall"]),
        f"controls called {screening} (n)": (_pct0(called.get("rate")) + _ci(called.get("interval"))
                                              + f" n={called.get('n', 0)}") if called else "-",
        f"other source called {screening}": _pct0(controls.get("other_source_called_screening", {}).get("rate")),
        f"20% frame: to {screening}": _pct0(frame.get("flip_to", {}).get(screening)),
        "lungs removed (chance)": (f"{_pct0(lungs.get('accuracy'))} ({_pct0(lungs.get('chance'))})"
                                   if lungs else "-"),
        "probe AUC": f"{probe['auc']:.2f}" if "auc" in probe else "-",
        **external_columns(evidence.external, screening),
        **{f"{group} as {screening}": cell(entry["called_screening"])
           for group, entry in evidence.scored.get("by_group", {}).items()},
    }


def cell(r: dict[str, Any] | None) -> str:
    """A rate with its interval and n."""
    return f"{_pct0(r['rate'])}{_ci(r['interval'])} n={r['n']}" if r and r["n"] else "-"


def external_columns(external: dict[str, Any], screening: str) -> dict[str, str]:
    """The two columns of a hospital the model never saw: sensitivity and specificity with interval and n."""
    return {f"external {screening} sens": cell(external.get("sensitivity")),
            "external spec": cell(external.get("specificity"))}


def table(rows: list[dict[str, Any]], screening: str, prefix: str | None = None,
          failed: dict[str, str] | None = None) -> str:
    """The study table for the experiments of ``dvc.api.exp_show`` rows named ``<prefix>-<variant>`` (the
    newest study when ``prefix`` is None), and under it why each of ``failed`` (name -> its last error line)
    failed; "" when there is none."""
    import pandas as pd

    named = [r for r in rows if r.get("Experiment") and str(r["Experiment"]).rsplit("-", 1)[-1] in VARIANTS
             and str(r["Experiment"]).startswith("study-")]
    if prefix is None and named:
        prefix = max(str(r["Experiment"]).rsplit("-", 1)[0] for r in named)
    chosen = sorted((r for r in named if str(r["Experiment"]).rsplit("-", 1)[0] == prefix),
                    key=lambda r: list(VARIANTS).index(str(r["Experiment"]).rsplit("-", 1)[-1]))
    failed = failed or {}
    rows_shown = [row(str(r["Experiment"]), str(r["rev"]), screening) for r in chosen]
    rows_shown += [{"experiment": name, "accuracy": "failed"} for name in failed
                   if name not in {r["experiment"] for r in rows_shown}]  # a failed run may leave no experiment
    if not rows_shown:
        return ""
    frame = pd.DataFrame(rows_shown).fillna("-")
    why = "".join(f"\n  {name} failed: {line}" for name, line in failed.items())
    return f"Shortcut study {prefix}:\n" + frame.to_string(index=False) + why


def run(args: argparse.Namespace) -> int:
    from coronet.experiments.compare import experiment_rows
    from coronet.experiments.demo import OVERRIDES
    from coronet.params import ClassScheme, load_params

    variants = args.only.split(",") if args.only else list(VARIANTS)
    if unknown := [v for v in variants if v not in VARIANTS]:
        raise UserError(f"--only names unknown variant(s) {unknown}; known: {', '.join(VARIANTS)}")
    screening = ClassScheme.parse(load_params()).screening
    if screening is None:
        raise UserError("params.yaml screening_class is not set: the study measures what is called that class")
    extra = dict(item.split("=", 1) for item in args.set or [] if "=" in item)
    settings = {**(OVERRIDES if args.settings == "demo" else {}), **extra}
    prefix = time.strftime("study-%Y%m%d-%H%M%S")
    names = queue(prefix, variants, settings)
    print(f"queued {', '.join(names)}; running {args.jobs} at a time")
    epochs = settings.get("train.epochs") or load_params().get("train", {}).get("epochs")
    status = wait(names, args.jobs, int(epochs) if epochs else None)
    failed = {n: failure(n) for n, s in status.items() if s == "Failed"}
    baseline = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    print()
    print(table(experiment_rows([baseline], 1), screening, prefix, failed))
    if failed:
        print(f"error: {', '.join(failed)} failed (why: under the table; all of it: dvc queue logs NAME)",
              file=sys.stderr)
        return 1
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = __doc__
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.add_argument("--settings", choices=["demo", "params"], default="demo",
                        help="demo: CPU-sized on the synthetic sources (default); params: params.yaml as it is")
    parser.add_argument("-j", "--jobs", type=positive_int, default=2, help="experiments run side by side (default 2)")
    parser.add_argument("--only", help=f"a comma-separated subset of {', '.join(VARIANTS)}")
    parser.add_argument("-S", "--set", action="append", metavar="KEY=VALUE", help="an override for every variant")
    parser.set_defaults(run=run)
