"""``coronet compare``: experiments side by side in a terminal: name, the params that differ between
them and the headline test metrics (``dvc exp show`` lists every param and metric: hundreds of columns)."""

from __future__ import annotations

import ast
import shutil
from dataclasses import dataclass
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class Shown:
    """A metric column: its key in the metrics files, its title and where its n comes from (a key, or
    ``n_test - key`` for the films not of the screened class); n is shown beside the rate."""

    title: str
    n: str | None = None
    minus: bool = False  # n is n_test minus the ``n`` column


def shown_metrics(screening: str | None, scored_groups: tuple[str, ...] = ()) -> dict[str, Shown]:
    """Headline metrics shown, in order (metrics.json and details.json keys -> columns); ``scored_groups``: the
    class groups of films only scored (params merge.sources.<name>.scored), each shown as its share called the
    screened class."""
    s = screening
    screened = {f"{s}_sensitivity": Shown(f"{s} sens", f"per_class.{s}.support"),
                f"{s}_specificity": Shown(f"{s} spec", f"per_class.{s}.support", minus=True),
                f"controls.{s}_rate": Shown(f"ctrl {s}", f"controls.{s}_rate_n"),
                f"external.{s}_sensitivity": Shown(f"ext {s} sens", f"external.{s}_sensitivity_n"),
                f"external.{s}_specificity": Shown("ext spec", f"external.{s}_specificity_n"),
                **{f"scored.{g}_{s}_rate": Shown(f"{g} as {s}", f"scored.{g}_{s}_rate_n")
                   for g in scored_groups}} if s else {}
    return {"accuracy": Shown("accuracy", "n_test"), "macro_f1": Shown("macro F1"),
            "grouped_accuracy": Shown("grouped", "n_test"), **screened, "ece": Shown("ECE")}


def legend(screening: str | None) -> str:
    """One line saying what the columns mean."""
    s = screening or "the screened class"
    return (f"rate (n: the films it is of) · sens: {s} films called {s} · spec: other films not called {s} · "
            f"ctrl: same-source controls called {s} · ext: a hospital never seen · ECE: calibration error · "
            "-: not computed")


def ignored(key: str) -> bool:
    """Params that are pins, not choices: the archives' checksums."""
    return key.startswith("download.archives.") and key.endswith(".sha256")


def column(row: dict[str, Any], key: str) -> Any:
    """A value of ``dvc.api.exp_show``'s row (DVC prefixes a column with its file when names clash), or
    None where the experiment has none (DVC shows "!")."""
    value = row[key] if key in row else next((v for k, v in row.items() if k.endswith(f":{key}")), None)
    if isinstance(value, str) and value.startswith("["):  # DVC hands list params over as their repr
        value = ast.literal_eval(value)
    return None if value in ("!", "", "None") else value


def text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, list):
        return "+".join(map(str, value))
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) >= 1 else f"{value:.4g}"
    return str(value)


def short_names(keys: list[str]) -> dict[str, str]:
    """``train.learning_rate`` -> ``learning_rate``: the last part of each name, longer where two clash."""
    names = {}
    for key in keys:
        parts = key.split(".")
        depth = 1
        while depth < len(parts) and sum(k.split(".")[-depth:] == parts[-depth:] for k in keys) > 1:
            depth += 1
        names[key] = ".".join(parts[-depth:])
    return names


def comparison(rows: list[dict[str, Any]], params: list[str], shown: dict[str, Shown]) -> pd.DataFrame:
    """One line per experiment (the baseline commit first): name, headline metrics with n, differing params."""
    rows = [r for r in rows if r.get("rev") != "workspace"]
    differing = [p for p in params if len({str(column(r, p)) for r in rows}) > 1]
    names = short_names(differing)
    table = []
    for row in rows:
        line = {"experiment": row.get("Experiment") or str(row.get("rev", ""))[:7]}
        for key, spec in shown.items():
            value = column(row, key)
            n = column(row, spec.n) if spec.n else None
            if spec.minus and n is not None:
                n = column(row, "n_test") - n if column(row, "n_test") is not None else None
            line[spec.title] = (f"{value:.3f}" if isinstance(value, float) else text(value)) + (
                f" ({text(n)})" if value is not None and n is not None else "")
        line.update({names[key]: text(column(row, key)) for key in differing})
        table.append(line)
    return pd.DataFrame(table)


def experiment_rows(revs: list[str] | None, num: int) -> list[dict[str, Any]]:
    """``dvc.api.exp_show``'s rows; outside a DVC project in git, or for a revision git does not know, one
    UserError saying so."""
    import dvc.api
    from dvc.exceptions import DvcException

    from coronet.errors import UserError

    try:
        return dvc.api.exp_show(revs=revs, num=num)
    except DvcException as exc:
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot list experiments: {text} (run it in the project's git checkout; --rev takes a "
                        "commit, branch or tag git knows)") from None
    except Exception as exc:  # scmrepo raises its own types for unknown revisions and missing repositories
        if type(exc).__module__.split(".")[0] not in {"scmrepo", "dvc", "pygit2", "dulwich"}:
            raise
        raise UserError(f"cannot list experiments: {exc} (--rev takes a commit, branch or tag git knows)") from None


def main(revs: list[str] | None, num: int, width: int | None = None) -> tuple[str, list[dict[str, Any]], str | None]:
    """The table of the experiments of ``revs`` (or HEAD) and ``num - 1`` older commits, the rows it came
    from and the screened class (for the shortcut study's table, which the CLI adds)."""
    rows = experiment_rows(revs, num)
    if not [r for r in rows if r.get("rev") != "workspace"]:
        return "no experiments yet: run `make demo` or `dvc exp run`", [], None
    from coronet.params import ClassScheme, MergeParams, flatten, load_params

    params = load_params()
    names = [k for k in flatten(params) if not ignored(k)]
    screening = ClassScheme.parse(params).screening
    groups = tuple(sorted({g for source in MergeParams.parse(params).sources.values() for g in source.scored.values()}))
    frame = comparison(rows, names, shown_metrics(screening, groups))
    width = width or max(80, shutil.get_terminal_size((120, 40)).columns)
    return f"{frame.to_string(index=False, line_width=width)}\n{legend(screening)}", rows, screening
