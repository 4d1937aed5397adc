"""metrics/model_card.md: the evaluation as an honest account a clinician can follow."""

from __future__ import annotations

from typing import Any

from coronet.data import sources
from coronet.evaluation.confounds import PROBE_WARNING_AUC
from coronet.evaluation.controls import clearly_above, free_rates, verdict
from coronet.evaluation.intervals import percent, shown
from coronet.evaluation.stress import LUNG_TESTS
from coronet.imaging import nuisance
from coronet.records import DataRecord, EvidenceRecord, RunRecord, StressRecord

# Khan, Shah, Bhat 2020, Tables IV-VI (the figures the paper reports; others are not restated here).
IMAGE_LEVEL_NOTE = " With an image-level split shared patients are expected, and they inflate the results."
# The paper's reported figures; its screened class is COVID-19 and its grouped view has 3 classes.
PAPER = {"accuracy": 0.895, "screening precision": 0.97, "screening recall": 1.00, "grouped accuracy": 0.95}



def _ci(interval: dict[str, Any] | None, n: int | None = None, scale: float = 100, digits: int = 1) -> str:
    return shown(interval, n, scale, digits)


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def probe_sentence(name: str, probe: dict[str, Any]) -> str:
    if "not_computed" in probe:
        return f"- {name}: not computed because {probe['not_computed']}."
    verdict = (f"**warning: at or above {PROBE_WARNING_AUC}, the source is readable from this input, so the "
               "data permit a shortcut**" if probe["auc"] >= PROBE_WARNING_AUC else "below the warning level")
    return (f"- {name}: cross-validated ROC AUC {probe['auc']:.3f}, balanced accuracy "
            f"{probe['balanced_accuracy']:.3f} ({probe['folds']} folds): {verdict}.")


def stress_section(stress: StressRecord, classes: list[str]) -> str:
    """The stress tests in plain words, a table, the lungs-removed test and the warnings."""
    rows = []
    for name, by_strength in stress.transforms.items():
        if name in LUNG_TESTS:
            continue
        for strength, stats in by_strength.items():
            rows.append([name, strength, percent(stats["accuracy"]), percent(stats["flip_rate"]),
                         *(percent(stats["flip_to"][c]) for c in classes)])
    table = _table(["transform", "strength", "accuracy", "predictions changed", *(f"to {c}" for c in classes)], rows)
    used = [name for name in stress.transforms if name not in LUNG_TESTS]
    listing = "; ".join(f"{name}: {nuisance.TRANSFORMS[name].what}" for name in used)
    warned = "\n".join(f"- **warning:** {w}." for w in stress.warnings) or (
        f"- No transform changed more than {percent(stress.warn_flip_rate)} of the predictions.")
    return f"""## Stress tests
Each test image was changed in a way that carries no information about disease ({listing}). A model that
reads the lungs should barely change its answers. Many answers flipping, above all towards one class, means
the model uses the nuisance as evidence: COVID-19 images in the public collection are often framed,
annotated figures from papers, the others hospital films, so "frame means COVID-19" is a shortcut these data
teach. Unchanged test accuracy: {percent(stress.baseline["accuracy"])} on {stress.images} images. "to c": of
the images not predicted c before, the share predicted c after.

{table}

{warned}

![stress tests](figures/stress.png)

{lungs_section(stress)}"""


def lungs_section(stress: StressRecord) -> str:
    """The lungs-removed test (Maguolo & Nanni 2021) against chance."""
    lungs = stress.lungs
    if not lungs:
        return ""
    rows = [[key.replace("_", " "), percent(v["accuracy"]) + _ci(v["interval"]), percent(v["chance"]),
             "yes" if v["above_chance"] else "no"] for key, v in lungs.items()]
    return f"""### The lungs-removed test
The central region that holds the lung fields was filled with the image's median (lungs removed), or
everything outside it was (lungs only). With the lungs removed there is no disease left to see: a model
still clearly above chance there reads something else (the frame, labels, the patient's age and size, the
film), as Maguolo & Nanni (2021) found for models of this kind. Chance: always answering the most common
test class.

{_table(["test", "accuracy (95% interval)", "chance", "interval above chance"], rows)}
"""


def controls_section(controls: dict[str, Any]) -> str:
    """Is it COVID-19 or the source? The same-source controls in plain words."""
    if "not_computed" in controls:
        return f"""## Is it COVID-19 or the source?
{verdict(controls)}
"""
    name = controls["screening_class"]
    rows = [[finding or "(blank)", str(v["n"]), percent(v["rate"]) + _ci(v["interval"])]
            for finding, v in controls["by_finding"].items()]
    mapped = controls["mapped"]
    by_class = "; ".join(f"{label} {v['called']}/{v['n']}" for label, v in mapped["by_class"].items()) or "none"
    return f"""## Is it COVID-19 or the source?
Every {name} image here comes from one public collection (adults, figures from papers, many framed or
annotated) and every other image from other hospitals' films, so accuracy alone cannot tell whether the model
learned {name} or "looks like a figure from that collection". The collection also holds X-rays of other
findings, with the same look and no {name}: the same-source controls. A model that learned the disease calls
few of them {name}; a model that learned the source calls most of them {name}.

{verdict(controls)}

{_table(["finding", "controls", f"called {name} (95% interval)"], rows)}

Controls whose finding maps to one of our classes were called that class in {mapped["called"]} of {mapped["n"]}
({percent(mapped["rate"])}{_ci(mapped["interval"])}; {by_class}).
"""


def data_section(data: DataRecord, licences: dict[str, int], synthetic: bool) -> str:
    """Where the images came from: the real sources with their licences and cohorts, or, for a synthetic
    run, only that (the real cohorts, licences and ages would describe data this model never saw)."""
    registry = sources.registered()
    if synthetic:
        twins = ", ".join(f"{name} ({registry[name].title if name in registry else name})" for name in data.sources)
        return f"""- **Synthetic images only**: the offline generator's twins of {twins}, written in those
  archives' layouts with drawn findings. No patient, hospital, age or licence stands behind them, and
  nothing measured below says anything about chest X-rays."""
    licence_lines = "\n".join(f"  - {name or 'blank'}: {n} images" for name, n in sorted(licences.items()))
    source_lines = "\n".join(f"  - {name}: {registry[name].title if name in registry else name}; licence "
                             f"{registry[name].licence if name in registry else 'unknown'}" for name in data.sources)
    cohorts = "; ".join(f'"{registry[n].cohort_ages}" for {n}' for n in data.sources
                        if n in registry and registry[n].cohort_ages)
    return f"""- Sources (download source of this run: {data.download_source}):
{source_lines}
- **Confound:** each source brings its own classes (above) and its own patients, hospital, equipment and file
  format; where classes come from different sources, all of these differ with the label.
  {"Age bands from a cohort, not from the files: " + cohorts + "." if cohorts else ""}
- Licences of the images used:
{licence_lines}"""


def external_section(external: dict[str, Any], synthetic: bool = False) -> str:
    """A hospital the model never saw: each external source's films, scored, in plain words."""
    if "not_computed" in external:
        return f"""## A hospital the model never saw
Not computed: {external["not_computed"]}.
"""
    name = external["screening_class"]

    def shown_rate(r: dict[str, Any]) -> str:
        return f"{r['called']}/{r['n']} = {percent(r['rate'])}{_ci(r['interval'])}" if r["n"] else "no films"

    rows = []
    for source, part in external["by_source"].items():
        others = "; ".join(f"{label} films called {label} {shown_rate(v[f'called_{label}'])}" for label, v in
                           part["by_class"].items()) or "-"
        answers = ", ".join(f"{c} {n}" for c, n in part["answers"].items())
        rows.append([source, shown_rate(part["sensitivity"]), shown_rate(part["specificity"]), others, answers])
    inside, outside = external["internal"], external
    gap = [what for what in ("sensitivity", "specificity") if clearly_above(inside[what], outside[what])]
    verdict_line = (f"**Its {' and '.join(gap)} {'falls' if len(gap) == 1 else 'fall'} well below the test "
                    "split's**: what the model learned does "
                    "not carry to a hospital it never saw; the test split's numbers describe the training "
                    "collections, not chest X-rays in general." if gap else
                    "Within what this many films can show, the external figures agree with the test split's.")
    free = "".join(f"\n- **Read with care**: {note}." for note in free_rates(external))
    twin = ("\n\nIn this run the hospital is the generator's twin of it (drawn films with a look of their own), "
            "not real films: the figures test the pipeline, not the model's worth." if synthetic else "")
    return f"""## A hospital the model never saw
Films of a hospital whose images were never trained on, never used for validation and share no patient or
near duplicate with the training data (params merge.sources, role external). Two questions, in plain words:
- **Sensitivity**: of its {name} films, how many did the model call {name}?
- **Specificity**: of its other films, how many did it *not* call {name} (whatever else it answered)? The
  stricter figure beside it, "other films", counts those called their own class (a normal film called normal).
A model that reads the source rather than the disease fails here even when the test split looks good (DeGrave,
Janizek & Lee 2021). Test split for comparison: sensitivity {shown_rate(inside["sensitivity"])}, specificity
{shown_rate(inside["specificity"])}.{twin}

{_table(["source", f"{name} sensitivity (95% interval)", "specificity", "other films", "answers"], rows)}

All external films: sensitivity {shown_rate(outside["sensitivity"])}, specificity
{shown_rate(outside["specificity"])}. {verdict_line}{free}
"""


def scored_section(scored: dict[str, Any]) -> str:
    """Films only scored against a class group (an adult's pneumonia without subtype), in plain words."""
    if "not_computed" in scored:
        return f"""## Adult pneumonia: films only scored
Not computed: {scored["not_computed"]}.
"""
    name, inside = scored["screening_class"], scored["internal_called_screening"]

    def shown_rate(r: dict[str, Any] | None) -> str:
        return "not computed (the group is not in params class_groups)" if r is None else (
            f"{r['called']}/{r['n']} = {percent(r['rate'])}{_ci(r['interval'])}" if r["n"] else "no films")

    rows = [[group, ", ".join(e["sources"]), str(e["n"]), shown_rate(e["called_screening"]),
             f"{shown_rate(e['called_group'])} ({' or '.join(e['members'])})",
             ", ".join(f"{c} {k}" for c, k in e["answers"].items())] for group, e in scored["by_group"].items()]
    alarming = [g for g, e in scored["by_group"].items() if clearly_above(e["called_screening"], inside)]
    verdict_line = (f"**The model calls these films {name} clearly more often than the test split's other films** "
                    f"({', '.join(alarming)}): it answers {name} for an adult's pneumonia, the confusion a "
                    "clinician fears most." if alarming else
                    f"Within what this many films can show, these films are not called {name} more often than the "
                    "test split's other films.")
    return f"""## Adult pneumonia: films only scored
Films whose finding no class names exactly (a pneumonia without its bacterial or viral subtype: NIH's labels
are text-mined and carry none; params merge.sources.<name>.scored). They are never trained on, never used for
validation and share no patient with the training data. Two figures: how many are called {name} (wrong, and
the confusion a clinician fears most), and how many are called a class of their group (right in the grouped
view). Test split's films of other classes called {name}, for comparison: {shown_rate(inside)}.

{_table(["group", "sources", "films", f"called {name} (95% interval)", "called its group", "answers"], rows)}

{verdict_line}
"""


def results_section(evidence: EvidenceRecord, sources_trained: list[str], classes: list[str]) -> str:
    """The headline beside the paper's figures, then each class, every proportion with its interval."""
    ci, n = evidence.intervals, evidence.n_test
    results = [
        ["accuracy", percent(evidence.accuracy) + _ci(ci["accuracy"], n), percent(PAPER["accuracy"])],
        ["macro F1", percent(evidence.macro_avg["f1"]) + _ci(ci["macro_f1"], n), "-"],
    ]
    if screened := evidence.screening.get("class"):  # params screening_class
        scores, intervals = evidence.per_class[screened], ci["per_class"][screened]
        results += [[f"{screened} precision", percent(scores["precision"]) + _ci(intervals["precision"]),
                     percent(PAPER["screening precision"])],
                    [f"{screened} recall (sensitivity)", percent(scores["recall"]) + _ci(intervals["recall"]),
                     percent(PAPER["screening recall"])]]
    if groups := evidence.grouped.get("groups"):  # params class_groups
        view = "; ".join(f"{g} = {' + '.join(m)}" for g, m in groups.items() if len(m) > 1)
        results.append([f"{len(groups)}-class accuracy ({view})", percent(evidence.grouped["accuracy"]),
                        percent(PAPER["grouped accuracy"])])
    per_class = [[c, percent(s["precision"]) + _ci(ci["per_class"][c]["precision"]),
                  percent(s["recall"]) + _ci(ci["per_class"][c]["recall"]),
                  percent(s["specificity"]) + _ci(ci["per_class"][c]["specificity"]),
                  "n/a" if evidence.roc_auc[c] is None else f"{evidence.roc_auc[c]:.3f}"
                  + _ci(ci["roc_auc"][c], n, 1, 3), str(s["support"])]
                 for c, s in ((c, evidence.per_class[c]) for c in classes)]
    return f"""## Results on the test split
95% intervals in brackets: Wilson for proportions (accuracy, precision, recall, specificity), a bootstrap of
{ci["bootstrap_resamples"]} resamples of the {n} test images for macro F1 and ROC AUC. The paper's figures come
from an image-level split of its own two sources (Cohen's COVID-19 collection and Kermany's); this run's are
{" and ".join(sources_trained)}.

{_table(["metric", "this run", "paper (Tables IV-VI)"], results)}

{_table(["class", "precision", "recall", "specificity", "ROC AUC", "test images"], per_class)}
"""


def counts_table(data: DataRecord, classes: list[str]) -> str:
    """Images per class and split, then all images and patients."""
    splits = [s for s in ("train", "val", "test", "control", "external", "scored") if s in data.images]
    counts = [[c, *(str(data.images[s].get(c, 0)) for s in splits)] for c in classes]
    counts += [[row, *(str(data.images[s][key]) for s in splits)] for row, key in (("all images", "total"),
                                                                                      ("patients", "patients"))]
    return _table(["class", *splits], counts)


def training_section(run: RunRecord, group_by: str, classes: list[str]) -> str:
    train = run.train_params()
    return f"""## Training setup
- {train.backbone} (weights: {train.weights or "none, from scratch"}), Flatten, Dropout {train.dropout}, Dense
  {train.dense_units} relu, Dense {len(classes)} softmax; input {train.image_size} px; Adam lr {train.learning_rate};
  batch {train.batch_size}; {train.epochs} epochs; augmentation {vars(train.augment)}.
- BatchNorm: momentum {train.bn_momentum or "Keras default (0.99)"}; statistics re-estimated after
  training: {"yes" if train.recalibrate_bn else "no"}.
- Split: {"grouped by patient (no patient in two splits)" if group_by == "patient" else
          "by image at random, as the paper (a patient's images can fall in both training and test)"}.
"""


def calibration_section(calibration: dict[str, Any]) -> str:
    return f"""## Calibration
Expected calibration error {calibration["ece"]:.3f} ({calibration["bins"]} bins), Brier score
{calibration["brier"]:.3f}. A probability of 0.9 should be right 9 times in 10; the diagram shows how
far this model is from that.

![reliability diagram](figures/reliability.png)
"""


def breakdowns_section(evidence: EvidenceRecord) -> str:
    """Accuracy and recall per source and per age band of the test images."""
    tables = []
    for title, key in (("source", "by_source"), ("age band", "by_age_band")):
        rows = [[group, str(v["n"]), percent(v["accuracy"]),
                 ", ".join(f"{c} {percent(r)}" for c, r in v["recall"].items())]
                for group, v in getattr(evidence, key).items()]
        tables.append(f"By {title}:\n\n" + _table([title, "test images", "accuracy", "recall per class"], rows))
    return "## Breakdowns\n" + "\n\n".join(tables) + "\n"


def probe_section(probe: dict[str, Any], sources_trained: list[str]) -> str:
    return f"""## Confound probe
Can the image's source ({" or ".join(sources_trained)}) be predicted without looking at disease? A
cross-validated logistic regression over {probe["images"]} images:
{probe_sentence("from plain image statistics of the original files (size, bytes, intensity histogram)",
                probe["image_statistics"])}
{probe_sentence("from the model's penultimate features", probe["model_features"])}
Since the source decides the COVID-19 label here, a high score means the headline numbers may measure the
source rather than the disease (DeGrave et al. 2021). It is a warning, not a success.
"""


def leakage_section(leak: dict[str, Any], group_by: str) -> str:
    return f"""## Leakage check
Patients in more than one split: {leak["patients_shared"]}; identical images in more than one split:
{leak["images_shared"]}; groups of near duplicates in more than one split:
{leak.get("near_duplicate_groups_shared", "not checked")}.{"" if group_by == "patient" else IMAGE_LEVEL_NOTE}
"""


def limitations_section(data: DataRecord, sources_trained: list[str]) -> str:
    registry = sources.registered()
    caveats = "\n".join(f"- {name}: {caveat}." for name in data.sources if name in registry
                         for caveat in registry[name].caveats)
    return f"""## Known limitations
- {len(sources_trained)} training sources, each tied to labels: see the confound probe and "A hospital the
  model never saw".
{caveats}
- Small test set: the intervals above are wide; differences inside them are not evidence.
- Probabilities are only as reliable as the calibration section shows.
"""


def render(evidence: EvidenceRecord, data: DataRecord, run: RunRecord, licences: dict[str, int],
           classes: list[str], stress: StressRecord | None = None) -> str:
    """The card, section by section. ``data``: metrics/data.json (counts, the split's settings, the download
    source); ``run``: the train stage's record (the params the model was fitted with, what it was trained on)."""
    trained_on, group_by = run.trained_on, data.split_settings["group_by"]
    synthetic_note = ("\nEverything below describes that demonstration run: its numbers measure how well the model "
                      "tells the generator's drawn findings apart, not chest X-rays.\n" if trained_on.synthetic else "")
    head = f"""# CoroNet model card

> **{trained_on.statement()}**
{synthetic_note}
## Intended use
Research on chest X-ray classification into {", ".join(classes)}. **Not for diagnosis or any clinical
decision**: the model has not been validated prospectively, on other hospitals' equipment, or on the
patients it would be used for.

## Data
{data_section(data, licences, trained_on.synthetic)}
- Images per class and split ({data.total} in all; {data.rejected["total"]} records rejected, listed in
  data/interim/rejected.csv):

{counts_table(data, classes)}
"""
    gradcam = """## What the model looked at
Grad-CAM on test images per class, correct and wrong:

![Grad-CAM panel](figures/gradcam_panel.png)
"""
    return "\n".join([
        head,
        training_section(run, group_by, classes),
        results_section(evidence, trained_on.sources, classes),
        calibration_section(evidence.calibration),
        breakdowns_section(evidence),
        probe_section(evidence.confound_probe, trained_on.sources),
        leakage_section(evidence.leakage, group_by),
        controls_section(evidence.controls),
        external_section(evidence.external, trained_on.synthetic),
        scored_section(evidence.scored),
        stress_section(stress, classes) if stress else "",
        gradcam,
        limitations_section(data, trained_on.sources),
    ])
