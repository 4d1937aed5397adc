"""Code tier: a training checkpoint is resumed only by the code and params that wrote it."""

from __future__ import annotations


def test_checkpoint_fingerprint_covers_the_declared_dependencies_and_versions(monkeypatch, tmp_path):
    """A checkpoint belongs to the train stage's declared dependencies (a code fix in any of them, new
    data), its params and the TensorFlow/Keras versions: nothing else resumes it."""
    import keras

    from coronet.model.checkpoints import fingerprint, stage_dependencies

    module, data = tmp_path / "fit.py", tmp_path / "images"
    module.write_text("LEARNING = 1\n")
    data.mkdir()
    (data / "a.png").write_bytes(b"x")
    (tmp_path / "dvc.yaml").write_text(f"stages:\n  train:\n    deps:\n      - {module}\n      - {data}\n")
    deps = stage_dependencies("train", tmp_path / "dvc.yaml")
    assert deps == [module, data]
    before = fingerprint({"epochs": 2}, deps)
    assert fingerprint({"epochs": 2}, deps) == before and fingerprint({"epochs": 3}, deps) != before
    module.write_text("LEARNING = 2  # a code fix\n")
    after_fix = fingerprint({"epochs": 2}, deps)
    assert after_fix != before
    (data / "b.png").write_bytes(b"y")  # one more image in a declared folder
    assert fingerprint({"epochs": 2}, deps) != after_fix
    now = fingerprint({"epochs": 2}, deps)
    monkeypatch.setattr(keras, "__version__", "0.0.1")
    assert fingerprint({"epochs": 2}, deps) != now
