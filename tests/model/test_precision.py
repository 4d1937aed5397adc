"""Model tier: training precision (train.precision) and what it leaves behind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from coronet import training
from coronet.errors import ParamsError
from coronet.model import build_model, inference_copy

CLASSES = ["covid", "normal"]


@pytest.fixture
def policy():
    """Leaves Keras' global dtype policy as the test found it."""
    import keras

    before = keras.mixed_precision.global_policy().name
    yield
    keras.mixed_precision.set_global_policy(before)


@pytest.mark.parametrize(("flags", "expected"), [({"avx512f", "avx512_bf16"}, "mixed_bfloat16"),
                                                 ({"avx512f", "amx_bf16"}, "mixed_bfloat16"),
                                                 ({"avx2", "fma"}, "float32"), (set(), "float32")])
def test_auto_picks_bfloat16_only_on_cpus_that_have_it(monkeypatch, flags, expected):
    monkeypatch.setattr(training, "cpu_flags", lambda: flags)
    assert training.resolve_precision("auto") == expected
    assert training.resolve_precision("float32") == "float32"  # an explicit choice stands


def test_float16_without_a_gpu_is_refused():
    with pytest.raises(ParamsError, match="mixed_float16 needs a GPU"):
        training.resolve_precision("mixed_float16")


def test_this_linux_cpu_reports_its_flags():
    assert "fpu" in training.cpu_flags()  # every x86 CPU since the 486; proves /proc/cpuinfo was read


def test_bfloat16_training_saves_a_float32_model(tmp_path, policy):
    """Augmentation stays float32 under a bfloat16 policy (it used to fail on the dtype mismatch), the
    head's softmax is float32, and the saved copy computes in float32 with the trained weights."""
    import keras

    from coronet.dataset import make_dataset

    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(rng.integers(0, 255, (80, 80), dtype=np.uint8)).save(paths[-1])
    frame = pd.DataFrame({"path": paths, "label": CLASSES * 2})
    training.set_precision("mixed_bfloat16")
    model = build_model(CLASSES, 71, "none")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    augment = {"rotation_deg": 10, "zoom": 0.1, "channel_shift": 20, "horizontal_flip": True}
    model.fit(make_dataset(frame, CLASSES, 71, 2, augment=augment, shuffle=True, seed=1), epochs=1, verbose=0)
    assert model.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert model.output.dtype == "float32"
    copy = inference_copy(model, CLASSES)
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # restored after the copy
    assert {layer.compute_dtype for layer in copy.layers if layer.weights} == {"float32"}
    for a, b in zip(model.get_weights(), copy.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    batch = np.stack([np.asarray(Image.open(p).convert("RGB").resize((71, 71)), "float32") for p in paths])
    np.testing.assert_allclose(copy.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=0.05)
