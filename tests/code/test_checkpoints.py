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


def test_an_epoch_is_saved_once_the_interval_has_passed_since_the_last_save(monkeypatch, tmp_path):
    """checkpoint_every_s: the first save waits the interval from the start of training, the next the
    interval from that save; 0 saves every epoch."""
    import keras

    from coronet.model import checkpoints as module

    clock = [100.0]
    monkeypatch.setattr(module.time, "monotonic", lambda: clock[0])
    every_epoch, every_minute = module.Checkpoints(tmp_path / "a", "k", 0), module.Checkpoints(tmp_path / "b", "k", 60)
    assert every_epoch.due() and not every_minute.due()
    clock[0] = 159.0
    assert not every_minute.due()
    clock[0] = 160.0
    assert every_minute.due()
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    every_minute.save(model, 3, [{"epoch": 3}], None)
    assert every_minute.load_state()["epoch"] == 3 and not every_minute.due()
    clock[0] = 220.0
    assert every_minute.due()
