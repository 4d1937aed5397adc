"""Model tier: training precision (train.precision) and what it leaves behind."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from coronet.errors import ParamsError
from coronet.model import runtime
from coronet.model.network import build_model, inference_copy
from coronet.params import AugmentParams

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
    monkeypatch.setattr(runtime, "cpu_flags", lambda: flags)
    assert runtime.resolve_precision("auto") == expected
    assert runtime.resolve_precision("float32") == "float32"  # an explicit choice stands


def test_float16_without_a_gpu_is_refused():
    with pytest.raises(ParamsError, match="mixed_float16 needs a GPU"):
        runtime.resolve_precision("mixed_float16")


def test_cpu_flags_are_read_from_cpuinfo():
    """The flags line of /proc/cpuinfo's format (what the kernel prints), not whatever this machine has."""
    text = "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: fpu sse2 avx512f amx_bf16\nbugs\t\t: spectre_v1\n"
    assert runtime.cpu_flags(text) == {"fpu", "sse2", "avx512f", "amx_bf16"}
    assert runtime.cpu_flags("no flags here\n") == set()


def test_bfloat16_training_saves_a_float32_model(tmp_path, policy):
    """Augmentation stays float32 under a bfloat16 policy (it used to fail on the dtype mismatch), the
    head's softmax is float32, and the saved copy computes in float32 with the trained weights."""
    import keras

    from coronet.model.dataset import make_dataset
    from coronet.model.fit import build_training_state

    rng = np.random.default_rng(0)
    paths = []
    for i in range(4):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(rng.integers(0, 255, (80, 80), dtype=np.uint8)).save(paths[-1])
    frame = pd.DataFrame({"path": paths, "label": CLASSES * 2})
    runtime.set_precision("mixed_bfloat16")
    model = build_model(CLASSES, 71, "none")
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="categorical_crossentropy")
    build_training_state(model)  # as training does (and the step is traced once)
    augment = AugmentParams(10, 0, 0, 0, 0.1, 20, True, False)
    model.fit(make_dataset(frame, CLASSES, 71, 2, augment=augment, shuffle=True, seed=1), epochs=1, verbose=0)
    assert model.get_layer("block1_conv1").compute_dtype == "bfloat16"
    assert model.output.dtype == "float32"
    copy = inference_copy(model, CLASSES)
    assert keras.mixed_precision.global_policy().name == "mixed_bfloat16"  # restored after the copy
    assert {layer.compute_dtype for layer in copy.layers if layer.weights} == {"float32"}
    for a, b in zip(model.get_weights(), copy.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    batch = np.stack([np.asarray(Image.open(p).convert("RGB").resize((71, 71)), "float32") for p in paths])
    # bfloat16 keeps 8 significant bits (a relative 2**-8 = 0.4% a value); over the network's layers the
    # softmax outputs of the bfloat16 model drift by a few hundredths at most from the float32 copy's.
    np.testing.assert_allclose(copy.predict(batch, verbose=0), model.predict(batch, verbose=0), atol=0.05)
