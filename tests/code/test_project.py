"""Code tier: params.yaml holds the paper's values and dvc.yaml wires each stage to exactly what it uses."""

from __future__ import annotations

import ast
import re

import yaml

from conftest import ROOT
from coronet.params import class_names, flatten, load_params

STAGE_PARAM_ACCESS = re.compile(r'(?:params|load_params\(\))(?:\["(\w+)"\]|\.\w+\("(\w+)")')


def test_params_hold_the_paper():
    params = load_params(ROOT / "params.yaml")
    assert class_names(params) == ["covid", "normal", "pneumonia_bacterial", "pneumonia_viral"]
    assert params["merge"]["counts"] == {"covid": 284, "normal": 310, "pneumonia_bacterial": 330, "pneumonia_viral": 327}
    t = params["train"]
    assert (t["image_size"], t["weights"], t["dropout"], t["dense_units"]) == (150, "imagenet", 0.5, 256)
    assert (t["learning_rate"], t["batch_size"], t["epochs"]) == (1e-4, 10, 80)
    assert t["augment"] == {"rotation_deg": 50, "width_shift": 0.2, "height_shift": 0.2, "shear_deg": 0.25,
                            "zoom": 0.1, "channel_shift": 20, "horizontal_flip": True, "vertical_flip": True}
    assert (t["bn_momentum"], t["recalibrate_bn"]) == (None, False)  # the fixes stay off in the paper's run
    assert params["resize"]["size"] == 224 and params["split"]["test_size"] == 0.2
    assert params["download"]["covid"]["url"].endswith("6a4242344473ccb5ed0d2148d8c7bfb1691e4ed8.zip")


def sections_read(script: str) -> set[str]:
    text = (ROOT / script).read_text()
    found = {a or b for a, b in STAGE_PARAM_ACCESS.findall(text)}
    if "class_names(params)" in text:
        found.add("classes")
    if "class_scheme(params)" in text:
        found |= {"classes", "class_groups", "screening_class"}
    return found


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
        assert {p.split(".")[0] for p in stage["params"]} == sections_read(script), name
        imported = {str(p.relative_to(ROOT)) for p in map(ROOT.joinpath, coronet_modules(ROOT / script, set()))}
        covered = {m for m in imported if m in deps or any(m.startswith(d + "/") for d in deps)}
        missing = imported - covered - {"src/coronet/__init__.py"}
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
    for module in ("metrics", "gradcam", "plots", "predict", "serving", "model_card", "stress"):
        assert f"src/coronet/{module}.py" not in train["deps"], module
    assert train["params"].count("tracking.experiment") == 1 and "serving" not in train["params"]


def test_the_pipeline_files_are_named_as_dvc_yaml_declares_them():
    """coronet.paths names each file once; each must be a dependency or output of a stage in dvc.yaml."""
    from coronet import paths

    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    declared = set()
    for stage in stages.values():
        for key in ("deps", "outs", "metrics", "plots"):
            declared |= {next(iter(e)) if isinstance(e, dict) else e for e in stage.get(key, [])}
    named = {str(v) for k, v in vars(paths).items() if k.isupper()}
    folders = {"data/raw", "data/interim", "data/processed", "models", "metrics"}  # parents, not files
    assert not {p for p in named - folders if p not in declared and not any(d.startswith(p + "/") for d in declared)}
    assert {str(paths.MODEL), str(paths.HEADLINE), str(paths.SPLITS)} <= declared
