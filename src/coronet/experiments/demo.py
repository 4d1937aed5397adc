"""``make demo``: the whole pipeline, offline, on the synthetic sources, as a DVC experiment.

``dvc exp run --temp`` runs in a copy with CPU-sized overrides; the MLflow run lands in this repository's
store (DVC_ROOT). Then the experiment's outputs are brought into the workspace (``dvc exp apply``) with
``params.yaml`` kept as it was, so ``dvc metrics show``, ``dvc plots show``, ``coronet predict`` and the
page show the demo's results. A second demo with nothing changed restores every stage from DVC's run
cache instead of recomputing it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coronet import paths
from coronet.errors import STAGE_TIMES
from coronet.records import DetailsRecord, HeadlineRecord

# CPU-sized: 71 px is Xception's smallest input; from scratch, BatchNorm needs the fixes of PIPELINE.md,
# and the first steps need a warm-up (see README "The demo on any CPU").
OVERRIDES = {
    "download.source": "synthetic",
    "download.synthetic.images_per_class": 32,
    "train.image_size": 71,
    "train.weights": "none",
    "train.epochs": 20,
    "train.learning_rate": 0.001,
    "train.warmup_epochs": 3,
    "train.clipnorm": 1.0,
    "train.bn_momentum": 0.9,
    "train.recalibrate_bn": "true",
    # Milder geometry than the paper's: from scratch on ~90 images, 50-degree turns and vertical flips
    # kept training accuracy near 0.6 after 20 epochs.
    "train.augment.rotation_deg": 10,
    "train.augment.width_shift": 0.1,
    "train.augment.height_shift": 0.1,
    "train.augment.vertical_flip": "false",
}
# The outputs `dvc exp apply` brings in that are not the demo's: params.yaml stays the repository's.
KEPT = ("params.yaml",)
SAMPLES = Path("samples")  # git-ignored
DVC = [sys.executable, "-m", "dvc"]  # this environment's DVC, whatever PATH says


def this_environment() -> dict[str, str]:
    """os.environ with this interpreter's folder first on PATH: the stages' `python` is this one."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True)


def experiment_metrics(name: str, baseline: str) -> tuple[HeadlineRecord, DetailsRecord] | None:
    """metrics/metrics.json and details.json as committed in the experiment ``name`` of the commit
    ``baseline`` (named explicitly: HEAD may have moved while the experiment ran)."""
    import dvc.api

    row = next((r for r in dvc.api.exp_show(revs=baseline) if r.get("Experiment") == name), None)
    if row is None:
        return None
    shown = [git("show", f"{row['rev']}:{path}") for path in (paths.HEADLINE, paths.DETAILS)]
    if any(s.returncode for s in shown):
        return None
    return (HeadlineRecord.loads(shown[0].stdout, f"{paths.HEADLINE} of {name}"),
            DetailsRecord.loads(shown[1].stdout, f"{paths.DETAILS} of {name}"))


def stage_time_table(path: Path, total: float) -> str:
    """The stages' times from ``path`` (as :func:`note_stage_time` wrote them), each with its share of
    ``total``, and what DVC took around them."""
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    around = max(0.0, total - sum(r["seconds"] for r in rows))
    rows.append({"stage": "dvc (checks, hashes, cache, git)", "seconds": around})
    lines = [f"{'stage':<34}{'seconds':>8}{'share':>7}"]
    lines += [f"{r['stage']:<34}{r['seconds']:>8.0f}{r['seconds'] / total:>7.0%}" for r in rows]
    return "\n".join([*lines, f"{'total':<34}{total:>8.0f}"])


def bring_in(name: str) -> bool:
    """The experiment's outputs into the workspace, params.yaml as it was. False if DVC could not."""
    applied = subprocess.run([*DVC, "exp", "apply", "--quiet", name], capture_output=True, text=True,
                             env=this_environment())
    if applied.returncode != 0:
        print(f"note: `dvc exp apply {name}` failed ({applied.stderr.strip()}); run it yourself to see the results",
              file=sys.stderr)
        return False
    git("checkout", "HEAD", "--", *KEPT)
    return True


def write_samples(folder: Path = SAMPLES) -> list[Path]:
    """One test image per class of the workspace's run, as ``<class>.png``: something to classify that the
    README can name (`coronet predict samples/`), its true class in its name."""
    from coronet import paths
    from coronet.model.dataset import load_split

    test = load_split("test", paths.IMAGES_CSV, paths.SPLITS)
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    written = []
    for label, rows in test.groupby("label", sort=True):
        row = rows.iloc[0]
        target = folder / f"{label}.png"
        shutil.copyfile(row["path"], target)
        written.append(target)
    return written


def main() -> int:
    inside = git("rev-parse", "--verify", "HEAD")
    if inside.returncode != 0:
        print("error: make demo needs a git checkout with a commit: DVC experiments are built on git", file=sys.stderr)
        return 2
    from coronet.evaluation.metrics import metrics_table
    from coronet.params import ClassScheme, load_params

    baseline = inside.stdout.strip()
    name = time.strftime("demo-%Y%m%d-%H%M%S")
    command = ["exp", "run", "--temp", "-n", name] + [f"-S{k}={v}" for k, v in OVERRIDES.items()]
    print("$ dvc " + " ".join(command), flush=True)
    times = Path(tempfile.mkdtemp(prefix="coronet-demo-")) / "stage_times.jsonl"
    times.touch()
    started = time.monotonic()
    if subprocess.run([*DVC, *command], env={**this_environment(), STAGE_TIMES: str(times)}).returncode != 0:
        print(f"error: the demo experiment {name} failed; its stage's message is above", file=sys.stderr)
        return 1
    elapsed = time.monotonic() - started
    metrics = experiment_metrics(name, baseline)
    classes = ClassScheme.parse(load_params()).classes
    minutes = f"{elapsed // 60:.0f} min {elapsed % 60:.0f} s"
    if metrics is None:
        print(f"\nExperiment {name} finished in {minutes}; `dvc exp show` lists it with its metrics.")
    else:
        print(f"\nExperiment {name} finished in {minutes}. Test metrics (synthetic data, 71 px, from scratch):")
        print(metrics_table(*metrics, classes))
    print(f"\nWhere the time went:\n{stage_time_table(times, elapsed)}")
    shutil.rmtree(times.parent, ignore_errors=True)
    applied = bring_in(name)
    if applied:
        write_samples()
    where = ("Its outputs are now in the workspace (params.yaml is as committed: the demo's settings were -S "
             "overrides, so `dvc status` lists the stages as changed):") if applied else "See it with:"
    print(f"""
The demo's model was trained on SYNTHETIC images: its answers on real X-rays mean nothing.
{where}
  . .venv/bin/activate              the project's environment (dvc, coronet, mlflow)
  dvc metrics show metrics/metrics.json   six headline numbers (metrics/details.json: per class, shortcut checks)
  dvc plots show                    curves, confusion matrix and figures: dvc_plots/index.html (works offline)
  make compare                      this experiment beside the others, readable at 120 columns
  coronet predict samples/          classify the demo's sample images (one test image per class) with this model
  make app                          the page: drop an X-ray, see the classes, where it looked, what to distrust
  make ui                           the MLflow UI on its training runs (curves, metrics, figures, model)""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
