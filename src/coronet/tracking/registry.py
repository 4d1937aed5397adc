"""The servable model of a run and the model registry: a logged model per served digest, a registered
version described and tagged with what it was trained on, its alias."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from coronet.tracking.run import PipelineRun

SERVED_DIGEST_TAG = "coronet.served_sha256"  # on a logged model: what it serves (model, config, code)


def servable_model(run: PipelineRun, digest: str, log: Callable[[dict[str, str]], Any]) -> Any:
    """The run's logged model that serves ``digest`` (the hash of the model file, its serving config and
    the code it runs): ``log(tags)`` logs it, unless the run already holds one of the same digest (an
    evaluation rerun for a plot or a formula), which is returned instead of a copy."""
    import mlflow

    logged = run.call("search models", mlflow.search_logged_models, experiment_ids=[run.experiment_id],
                      filter_string=f"source_run_id = '{run.run_id}'", output_format="list") or []
    same = [m for m in logged if (m.tags or {}).get(SERVED_DIGEST_TAG) == digest]
    if same:
        return same[0]
    info = run.call("log model", log, {SERVED_DIGEST_TAG: digest})
    return run.call("find model", mlflow.get_logged_model, info.model_id) if info else None


def register(run: PipelineRun, model: Any, name: str, description: str, tags: dict[str, str],
             alias: str = "candidate") -> str | None:
    """Registers the logged model under ``name`` with ``alias``, the version described (what it was trained
    on) and tagged; a model registered before (a rerun) keeps its version. Returns the version."""
    import mlflow

    client = mlflow.MlflowClient()
    versions = run.call("search versions", client.search_model_versions,
                        f"name = '{name}' and run_id = '{run.run_id}'") or []
    version = next((v for v in versions if v.source == f"models:/{model.model_id}"), None)
    if version is None:
        version = run.call("register model", mlflow.register_model, f"models:/{model.model_id}", name)
    if version is None:
        return None
    run.call("describe version", client.update_model_version, name, version.version, description=description)
    for key, value in tags.items():
        run.call("tag version", client.set_model_version_tag, name, version.version, key, value)
    run.call("set alias", client.set_registered_model_alias, name, alias, version.version)
    return str(version.version)
