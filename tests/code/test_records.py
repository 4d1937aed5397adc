"""Code tier: the records stages hand each other (run.json, data.json, package.json): one schema each,
written and read back whole; a stale or foreign file is one error naming it."""

from __future__ import annotations

import json

import pytest

from coronet.records import DataRecord, ModelContract, PackageRecord, RecordError, RunRecord

RUN = RunRecord(run_id="abc", experiment="coronet", tracking_uri="sqlite:///x.db", tracking_errors=[],
                train={"epochs": 2}, seed=42, precision="float32", throughput={"images_per_s": 3.0},
                model=ModelContract(["a", "b"], {"ab": ["a", "b"]}, "a", 71, None, 96, "stretch"))


def test_each_record_round_trips_through_its_file(tmp_path):
    data = DataRecord(images={"train": {"a": 1, "total": 1, "patients": 1}}, total=1, sources={"x": 1},
                      rejected={"total": 0}, near_duplicates={"pairs": 0, "images": 0}, leakage={"patients_shared": 0},
                      split_settings={"group_by": "patient"}, archives={}, download_source="synthetic")
    package = PackageRecord("abc", "models:/m-1", "coronet", "3", "f" * 64, "sqlite:///x.db", [])
    for record in (RUN, data, package):
        path = tmp_path / f"{type(record).__name__}.json"
        record.write(path)
        assert json.loads(path.read_text())["schema"] == f"{record.KIND}/1"
        assert type(record).read(path) == record
    assert RunRecord.read(tmp_path / "RunRecord.json").model.resize_mode == "stretch"  # nested record rebuilt


@pytest.mark.parametrize(("text", "says"), [
    ('{"run_id": null, "model": {"classes": ["a"]}}', "written by an older version of the pipeline"),
    ('{"schema": "coronet.data/1", "total": 3}', "a coronet.data record, not a coronet.run record"),
    ('{"schema": "coronet.run/0"}', "written by an older version of the pipeline"),
    ("not json", "cannot be read"),
    ('{"schema": "coronet.run/1", "run_id": "x"}', "does not hold what a coronet.run record holds"),
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
