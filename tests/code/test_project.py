"""Code tier: params.yaml holds the paper's values and dvc.yaml wires each stage to exactly what it uses."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import yaml

import coronet.params
from conftest import ROOT
from coronet.params import Section, flatten, load_params

PARSER_CALL = re.compile(r"\b(\w+Params|ClassScheme)\.parse\((?:params|load_params\(\))(, experiment_only=True)?\)|\b(project_seed)\(params\)")


def test_params_hold_the_paper():
    params = load_params(ROOT / "params.yaml")
    assert params["classes"] == ["covid", "normal", "pneumonia_bacterial", "pneumonia_viral"]
    assert params["merge"]["counts"] == {"covid": 284, "normal": 310, "pneumonia_bacterial": 330, "pneumonia_viral": 327}
    t = params["train"]
    assert (t["image_size"], t["weights"], t["dropout"], t["dense_units"]) == (150, "imagenet", 0.5, 256)
    assert (t["learning_rate"], t["batch_size"], t["epochs"]) == (1e-4, 10, 80)
    assert t["augment"] == {"rotation_deg": 50, "width_shift": 0.2, "height_shift": 0.2, "shear_deg": 0.25,
                            "zoom": 0.1, "channel_shift": 20, "horizontal_flip": True, "vertical_flip": True}
    assert (t["bn_momentum"], t["recalibrate_bn"]) == (None, False)  # the fixes stay off in the paper's run
    assert params["resize"]["size"] == 224 and params["split"]["test_size"] == 0.2
    assert params["download"]["archives"]["covid"]["url"].endswith("6a4242344473ccb5ed0d2148d8c7bfb1691e4ed8.zip")


class Recorder(Section):
    """Params.yaml that remembers every value read from it, by dotted key."""

    def __init__(self, data: dict, path: str = "", log: set[str] | None = None) -> None:
        self.log = set() if log is None else log
        dict.__init__(self, {k: Recorder(v, f"{path}{k}.", self.log) if isinstance(v, dict) else v
                             for k, v in data.items()})
        self.path = path

    def __getitem__(self, key: str):
        value = super().__getitem__(key)
        self.log.add(f"{self.path}{key}")
        return value

    def get(self, key: str, default=None):
        if key in self:
            return self[key]
        self.log.add(f"{self.path}{key}")
        return default


def docstring_only(path) -> bool:
    """A package's __init__.py that holds nothing but its docstring (and __version__): no dependency."""
    body = ast.parse(path.read_text()).body
    return path.name == "__init__.py" and all(isinstance(n, ast.Expr | ast.Assign) for n in body)


def keys_read(script: str) -> set[str]:
    """Every params key the stage's parsers read, found by running them on a recording params.yaml."""
    recorder = Recorder(yaml.safe_load((ROOT / "params.yaml").read_text()))
    for parser, experiment_only, seed in PARSER_CALL.findall((ROOT / script).read_text()):
        if seed:
            coronet.params.project_seed(recorder)
        else:
            options = {"experiment_only": True} if experiment_only else {}
            getattr(coronet.params, parser).parse(recorder, **options)
    return recorder.log


def coronet_modules(path, seen: set[str]) -> set[str]:
    """Every src/coronet module a file imports, transitively (lazy imports inside functions too)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("coronet"):
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names if a.name.startswith("coronet")]
        for name in names:
            rel = name.replace(".", "/")
            for candidate in (ROOT / "src" / f"{rel}.py", ROOT / "src" / rel / "__init__.py"):
                if candidate.is_file() and str(candidate) not in seen:
                    seen.add(str(candidate))
                    coronet_modules(candidate, seen)
    return seen


def test_each_stage_depends_on_exactly_what_it_reads_and_imports():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    assert list(stages) == ["download", "merge", "resize", "split", "train", "evaluate", "package"]
    for name, stage in stages.items():
        script = f"stages/{name}.py"
        assert stage["cmd"] == f"python {script}"
        deps = set(stage["deps"])
        assert script in deps
        read = keys_read(script)
        for declared in stage["params"]:  # each declared section (or key) is read ...
            assert any(k == declared or k.startswith(declared + ".") for k in read), (name, declared)
        for key in read:  # ... and everything read is declared (or holds what is): no params change is missed
            assert any(key == d or key.startswith(d + ".") or d.startswith(key + ".") for d in stage["params"]), (
                name, key)
        imported = {str(p.relative_to(ROOT)) for p in map(ROOT.joinpath, coronet_modules(ROOT / script, set()))}
        covered = {m for m in imported if m in deps or any(m.startswith(d + "/") for d in deps)}
        missing = {m for m in imported - covered if not docstring_only(ROOT / m)}
        assert not missing, f"{name} imports {sorted(missing)} without depending on them"
        for dep in deps:
            assert dep.startswith(("data/", "models/", "metrics/")) or (ROOT / dep).exists(), dep


def test_metrics_are_not_cached_and_analytics_are_off():
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    metrics = [m for s in stages.values() for m in s.get("metrics", [])]
    assert metrics and all(next(iter(m.values()))["cache"] is False for m in metrics)
    config = (ROOT / ".dvc" / "config").read_text()
    assert "analytics = false" in config and "check_update = false" in config


def test_flatten():
    assert flatten({"train": {"augment": {"zoom": 0.1}, "epochs": 80}, "seed": 1}) == {
        "train.augment.zoom": 0.1, "train.epochs": 80, "seed": 1}


def test_train_depends_only_on_what_determines_the_weights():
    """Evaluation, plotting, serving and prediction code can change without retraining 80 epochs."""
    train = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]["train"]
    for module in ("evaluation", "serving", "imaging/checks.py", "experiments"):
        assert not [d for d in train["deps"] if d.startswith(f"src/coronet/{module}")], module
    assert train["params"].count("tracking.experiment") == 1 and "serving" not in train["params"]


def test_the_pipeline_files_are_named_as_dvc_yaml_declares_them():
    """Coronet.paths names each file once; each must be a dependency or output of a stage in dvc.yaml."""
    from coronet import paths

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = set()
    for stage in stages.values():
        for key in ("deps", "outs", "metrics", "plots"):
            declared |= {next(iter(e)) if isinstance(e, dict) else e for e in stage.get(key, [])}
    named = {str(v) for k, v in vars(paths).items() if k.isupper()}
    # parents, not files; and the checkpoints, which are not an output on purpose (they outlive a failed run)
    folders = {"data/raw", "data/interim", "data/processed", "models", "metrics", "models/checkpoints"}
    assert not {p for p in named - folders if p not in declared and not any(d.startswith(p + "/") for d in declared)}
    assert {str(paths.MODEL), str(paths.HEADLINE), str(paths.SPLITS)} <= declared


# Files a stage names through coronet.paths that are not pipeline data: the download cache (beside the archives,
# never an output) and training checkpoints (resume state, removed when training ends).
NOT_PIPELINE_FILES = {"download": {"RAW"}, "train": {"CHECKPOINTS"}}


def test_each_stage_declares_every_pipeline_file_it_names():
    """A stage that reads a file dvc.yaml does not list (package read images.csv, splits.csv,
    sources.json and dvc.lock; train read sources.json and dvc.lock) reruns the wrong things. Every `paths.X`
    the stage script or a library module it imports names is one of its deps or outputs, or lies inside one;
    and no stage reads dvc.lock, which DVC rewrites while the pipeline runs."""
    import coronet.paths

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    for name, stage in stages.items():
        script = ROOT / f"stages/{name}.py"
        files = [script, *map(Path, coronet_modules(script, set()))]
        trees = [ast.parse(f.read_text()) for f in files]
        named = {node.attr for tree in trees for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                 and isinstance(node.value, ast.Name) and node.value.id == "paths"}
        assert named, name  # the scan finds what a stage names
        declared = [next(iter(o)) if isinstance(o, dict) else o for key in ("deps", "outs", "metrics", "plots")
                    for o in stage.get(key, [])]
        for attr in sorted(named - NOT_PIPELINE_FILES.get(name, set())):
            path = str(getattr(coronet.paths, attr))
            assert any(path == d or path.startswith(d.rstrip("/") + "/") or d.startswith(path + "/")
                       for d in declared), f"stage {name} names {path} (paths.{attr}) but dvc.yaml does not declare it"
        lock_readers = [str(f.relative_to(ROOT)) for f in files if "dvc.lock" in f.read_text()]
        assert not lock_readers, f"stage {name} reads dvc.lock through {lock_readers}"
