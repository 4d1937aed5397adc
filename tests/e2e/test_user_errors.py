"""End to end: what a user did to a finished pipeline (a damaged MLflow store, a processed image deleted) is one
`error:` line naming the file and what to do, never a traceback, from every door that meets it."""

from __future__ import annotations

from conftest import run_tool


def one_error(result, code: int) -> str:
    assert result.returncode == code, (result.returncode, result.stdout[-2000:], result.stderr[-3000:])
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr[-3000:]
    return errors[0]


def test_a_damaged_mlflow_store_is_one_line_from_the_ui_predict_and_the_package_stage(pipeline_copy, tmp_path):
    """A truncated mlflow.db gave 75 lines of traceback from `coronet ui` and 130 from `coronet predict` (in a
    folder without a local model, which asks the registry)."""
    project, env = pipeline_copy.project, pipeline_copy.env
    db = project.parent / "mlflow.db"
    db.write_bytes(db.read_bytes()[:4096])  # cut short, as a full disk or an interrupted copy leaves it
    says = f"{db} is not a usable MLflow store"
    assert says in one_error(run_tool(project, "coronet", "ui", "--port", "1", env=env, check=False), 2)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    image = next((project / "data/processed/images").iterdir())
    assert says in one_error(run_tool(elsewhere, "coronet", "predict", str(image), env=env, check=False), 2)
    assert says in one_error(run_tool(project, "python", "stages/package.py", env=env, check=False), 1)


def test_a_missing_processed_image_is_one_line_from_evaluate(pipeline_copy):
    """One deleted processed image gave 19 lines of TensorFlow from the evaluate stage."""
    project, env = pipeline_copy.project, pipeline_copy.env
    gone = sorted((project / "data/processed/images").iterdir())[0]
    gone.unlink()
    line = one_error(run_tool(project, "python", "stages/evaluate.py", env=env, check=False), 1)
    assert f"first: {gone.relative_to(project)}" in line and "dvc checkout" in line


def test_a_store_lock_that_cannot_be_used_stops_the_package_stage_in_one_line(pipeline_copy):
    """A lock file that was a folder was a warning, and nothing was registered: the stage went on without MLflow."""
    project, env = pipeline_copy.project, pipeline_copy.env
    lock = project.parent / "mlflow.db.lock"
    lock.unlink(missing_ok=True)
    lock.mkdir()
    line = one_error(run_tool(project, "python", "stages/package.py", env=env, check=False), 1)
    assert f"cannot use {lock} as a lock" in line and "remove it" in line
