"""Code tier: the records stages hand each other (run.json, data.json, package.json): one schema each,
written and read back whole; a stale or foreign file is one error naming it."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from conftest import TRAIN
from coronet.records import (
    DataRecord,
    ModelContract,
    ModelMismatchError,
    PackageRecord,
    RecordError,
    RunRecord,
    TrainingData,
)

RUN = RunRecord(run_id="abc", experiment="coronet", tracking_uri="sqlite:///x.db", tracking_errors=[],
                train=TRAIN, seed=42, precision="float32", throughput={"images_per_s": 3.0},
                model=ModelContract(["a", "b"], {"ab": ["a", "b"]}, "a", 71, None, 96, "stretch", "0" * 64, 2),
                trained_on=TrainingData("synthetic", {"covid": 3, "kermany": 9}, 71, None, 2)).sealed()


def test_each_record_round_trips_through_its_file(tmp_path):
    data = DataRecord(images={"train": {"a": 1, "total": 1, "patients": 1}}, total=1, sources={"x": 1},
                      rejected={"total": 0}, near_duplicates={"pairs": 0, "images": 0}, leakage={"patients_shared": 0},
                      split_settings={"group_by": "patient"}, archives={}, download_source="synthetic")
    package = PackageRecord("abc", "models:/m-1", "coronet", "3", "f" * 64, "sqlite:///x.db", [])
    for record in (RUN, data, package):
        path = tmp_path / f"{type(record).__name__}.json"
        record.write(path)
        assert json.loads(path.read_text())["schema"] == f"{record.KIND}/{record.SCHEMA}"
        assert type(record).read(path) == record
    assert RunRecord.read(tmp_path / "RunRecord.json").model.resize_mode == "stretch"  # nested record rebuilt


@pytest.mark.parametrize(("text", "says"), [
    ('{"run_id": null, "model": {"classes": ["a"]}}', "written by an older version of the pipeline"),
    ('{"schema": "coronet.data/1", "total": 3}', "a coronet.data record, not a coronet.run record"),
    ('{"schema": "coronet.run/1"}', "written by an older version of the pipeline"),
    ('{"schema": "coronet.run/4"}', "written by a newer version of the pipeline than this one"),
    ("not json", "cannot be read"),
    ('{"schema": "coronet.run/3", "run_id": "x"}', "does not hold what a coronet.run record holds"),
])
def test_a_stale_or_foreign_record_is_one_error_naming_it(tmp_path, text, says):
    path = tmp_path / "run.json"
    path.write_text(text)
    with pytest.raises(RecordError) as info:
        RunRecord.read(path)
    assert str(path) in str(info.value) and says in str(info.value) and "rerun the train stage" in str(info.value)


def test_a_missing_record_says_which_stage_writes_it(tmp_path):
    with pytest.raises(RecordError, match="is missing: rerun the split stage"):
        DataRecord.read(tmp_path / "data.json")


def test_what_a_model_was_trained_on_is_said_in_one_sentence():
    synthetic = RUN.trained_on
    assert synthetic.statement().startswith("Trained on 12 SYNTHETIC images") and "mean nothing" in synthetic.statement()
    assert synthetic.tags() == {"training.data": "synthetic", "training.sources": "covid,kermany",
                                "training.image_size": "71", "training.weights": "none", "training.epochs": "2"}
    real = TrainingData("upstream", {"covid": 200, "kermany": 700}, 150, "imagenet", 80)
    assert "SYNTHETIC" not in real.statement() and "900 chest X-rays from covid (200), kermany (700)" in real.statement()


@pytest.mark.parametrize(("change", "says"), [
    ({"sha256": "1" * 64}, "sha256 is not the one the record names"),
    ({"classes": ["b", "a"]}, "were changed after training (its seal does not match)"),
    ({"trained_on": {"download_source": "upstream"}}, "training data were changed after training"),
    ({"classes": ["b", "a", "c"], "groups": {}, "screening": None}, "lists 3 classes for a model of 2 outputs"),
    ({"groups": {"ab": ["a", "x"]}}, "its group 'ab' names ['x'], not classes"),
    ({"screening": "x"}, "its screening class 'x' is not one of its classes"),
])
def test_a_model_and_a_record_that_do_not_belong_together_are_one_error(tmp_path, change, says):
    """A record with swapped or missing classes beside a model was used without a word."""
    import dataclasses

    model = tmp_path / "coronet.keras"
    model.write_bytes(b"model bytes")
    contract = dataclasses.replace(RUN.model, sha256=hashlib.sha256(b"model bytes").hexdigest())
    good = dataclasses.replace(RUN, model=contract).sealed()
    good.check_model(model, tmp_path / "run.json")  # the file it names: no error
    if "trained_on" in change:  # `download_source: upstream` made the synthetic demo model "real" data
        bad = dataclasses.replace(good, trained_on=dataclasses.replace(good.trained_on, **change["trained_on"]))
    else:
        bad = dataclasses.replace(good, model=dataclasses.replace(good.model, **change))
    with pytest.raises(ModelMismatchError) as info:
        bad.check_model(model, tmp_path / "run.json")
    assert str(model) in str(info.value) and str(tmp_path / "run.json") in str(info.value) and says in str(info.value)


@pytest.mark.parametrize(("path", "value", "says"), [
    (("model", "groups"), None, "model.groups is None, not dict"),
    (("model", "classes"), None, "model.classes is None, not list"),
    (("model", "screening"), ["covid"], "model.screening is ['covid']"),
    (("model", "outputs"), "2", "model.outputs is '2', not int"),
    (("trained_on", "sources"), {"covid": "many"}, "trained_on.sources is {'covid': 'many'}"),
    (("seed",), True, "seed is True, not int"),
    (("surprise",), 1, "unknown field 'surprise'"),
    (("trained_on", "surprise"), 1, "unknown field 'trained_on.surprise'"),
])
def test_a_hand_edited_record_is_one_error_naming_the_field(tmp_path, path, value, says):
    """`model.groups: null`, `classes: null` or `screening: ["covid"]` in run.json were tracebacks: these
    checks ran before the seal's. Every field is now typed before anything uses it."""
    data = RUN.to_json()
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    (tmp_path / "run.json").write_text(json.dumps(data))
    with pytest.raises(RecordError) as info:
        RunRecord.read(tmp_path / "run.json")
    assert "does not hold what a coronet.run record holds" in str(info.value) and says in str(info.value)


def evaluation_records() -> list:
    from coronet.records import DetailsRecord, EvidenceRecord, HeadlineRecord, StressRecord

    head = HeadlineRecord(0.8, 0.7, 0.05, 26, "covid", 0.5, 1.0)
    details = DetailsRecord(0.8, None, {"covid": {"precision": 1.0, "support": 7}}, {"covid": {"covid": 4}},
                            {"covid_rate": 0.5, "covid_rate_n": 16}, {}, {})
    evidence = EvidenceRecord(**{f.name: {} for f in dataclasses.fields(EvidenceRecord)} | {
        "accuracy": 0.8, "n_test": 26})
    stress = StressRecord(26, 0.25, {"accuracy": 0.8}, {}, 0.2, "covid", {}, [])
    return [head, details, evidence, stress]


def test_the_evaluation_records_round_trip_and_metrics_json_keeps_dvcs_columns_short(tmp_path):
    """Metrics.json has no schema key (DVC would show it as a column) and names the screened class's scores."""
    for record in evaluation_records():
        path = tmp_path / f"{type(record).__name__}.json"
        record.write(path)
        assert type(record).read(path) == record
    head = json.loads((tmp_path / "HeadlineRecord.json").read_text())
    assert sorted(head) == ["accuracy", "covid_sensitivity", "covid_specificity", "ece", "macro_f1", "n_test"]


@pytest.mark.parametrize("damage", ["{not json", "[]", "{}", '{"accuracy": "high"}'])
def test_a_damaged_evaluation_file_is_one_error_naming_it_in_every_reader(tmp_path, damage):
    """No reader falls back to {} on a broken metrics, evidence or stress file: the page, `coronet predict`
    (serving.models), the study (from a commit) and the package stage read them through their records."""
    from coronet.serving.models import EVALUATION, evaluation

    written = {type(r): r for r in evaluation_records()}
    for name, record in EVALUATION.values():
        folder = tmp_path / name
        folder.mkdir()
        for other_name, other in EVALUATION.values():
            written[other].write(folder / other_name)
        (folder / name).write_text(damage)
        with pytest.raises(RecordError) as caught:
            evaluation(folder)
        message = str(caught.value)
        assert name in message and "\n" not in message and "rerun the evaluate stage" in message
        with pytest.raises(RecordError):
            record.loads(damage, f"metrics/{name} of abc1234")  # the study's and the demo's way


def test_a_model_without_an_evaluation_beside_it_has_none(tmp_path):
    from coronet.serving.models import evaluation

    assert evaluation(tmp_path) == {"headline": None, "evidence": None, "stress": None}
