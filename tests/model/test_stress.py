"""Model tier: the nuisance transforms, the stress tests, the lungs-removed test and the same-source controls,
on known-answer models (whose shortcut, or lack of one, is built in)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from conftest import CLASSES, ROOT, encoded
from coronet.errors import ParamsError
from coronet.evaluation import controls, stress
from coronet.evaluation.model_card import stress_section
from coronet.evaluation.steps import stress_tests
from coronet.imaging import nuisance
from coronet.model.classifier import Classifier
from coronet.params import EvaluateParams, Section

SIZE = 71
STRENGTH = {"hflip": 1.0, "equalize": 1.0, "gamma": 0.5, "contrast": 0.5, "lungs_removed": 0.7, "lungs_only": 0.7}


def film(seed: int, size: int = 224) -> np.ndarray:
    """A bright textured image (mean about 200), like an exposed film without any frame."""
    rng = np.random.default_rng(seed)
    return rng.integers(170, 231, (size, size), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(nuisance.TRANSFORMS))
def test_each_transform_keeps_shape_and_range_and_is_deterministic(name):
    image = film(1)
    strength = STRENGTH.get(name, 0.2)
    once = nuisance.apply(name, [image, film(2)], strength, seed=7)
    again = nuisance.apply(name, [image, film(2)], strength, seed=7)
    for out, repeat in zip(once, again, strict=True):
        assert out.shape == image.shape and out.dtype == np.uint8
        np.testing.assert_array_equal(out, repeat)
    assert not np.array_equal(once[0], image)  # a real change at this strength
    identity = 1.0 if name == "lungs_only" else 0.0  # lungs_only keeps everything at 1
    np.testing.assert_array_equal(nuisance.apply(name, [image], identity, seed=7)[0], image)


def test_frames_cover_exactly_the_border():
    image = film(3, 100)
    median = nuisance.TRANSFORMS["frame_median"].fn(image, 0.2, np.random.default_rng(0))
    black = nuisance.TRANSFORMS["frame_black"].fn(image, 0.2, np.random.default_rng(0))
    assert (black[:20] == 0).all() and (black[:, 80:] == 0).all()
    np.testing.assert_array_equal(black[20:80, 20:80], image[20:80, 20:80])
    assert (median[:20] == int(np.median(image))).all()


def test_the_lung_tests_blank_the_centre_or_everything_else():
    image = film(4, 100)
    removed = nuisance.lungs_removed(image, 0.6)
    kept = nuisance.lungs_only(image, 0.6)
    fill = int(np.median(image))
    assert (removed[20:80, 20:80] == fill).all() and np.array_equal(removed[:20], image[:20])
    assert np.array_equal(kept[20:80, 20:80], image[20:80, 20:80]) and (kept[:20] == fill).all()


def linear_classifier(weights_for_covid: np.ndarray) -> Classifier:
    """A model whose COVID-19 logit is 0.05 x (128 - weighted mean of the input pixels), normal's is 0 and
    the pneumonias' -10: bright pixels under the weights mean "normal", dark ones "COVID-19"."""
    import keras

    mask = np.repeat(weights_for_covid[..., None], 3, axis=-1).astype(np.float32)
    mask /= mask.sum()
    inputs = keras.Input((SIZE, SIZE, 3))
    outputs = keras.layers.Dense(4, activation="softmax")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((SIZE * SIZE * 3, 4), np.float32)
    kernel[:, 0] = -0.05 * mask.ravel()
    model.layers[-1].set_weights([kernel, np.array([0.05 * 128, 0, -10, -10], np.float32)])
    return Classifier(model, CLASSES, SIZE, 224, "stretch")


def ring(width: float) -> np.ndarray:
    grid = np.zeros((SIZE, SIZE))
    k = round(SIZE * width)
    grid[:k], grid[-k:], grid[:, :k], grid[:, -k:] = 1, 1, 1, 1
    return grid


KEYED = ring(0.1)  # reads only the outer tenth: where a frame goes, what the lung tests keep or blank
CENTRE = 1 - ring(0.3)  # reads only the centre, which a 20% frame never touches


def test_a_model_keyed_on_the_frame_flips_and_one_that_ignores_it_does_not():
    images = [film(k) for k in range(12)]
    labels = ["normal"] * 12
    transforms = {"frame_black": (0.2,), "hflip": (1.0,)}

    shortcut = stress.run(linear_classifier(KEYED), images, labels, transforms, seed=0, batch_size=5)
    assert shortcut["baseline"]["accuracy"] == 1.0  # every bright film is "normal" before
    frame = shortcut["transforms"]["frame_black"]["0.2"]
    assert frame["flip_rate"] == 1.0 and frame["flip_to"]["covid"] == 1.0 and frame["called"]["covid"] == 1.0
    assert frame["accuracy"] == 0.0 and frame["mean_probability_change"]["covid"] > 0.5
    assert shortcut["transforms"]["hflip"]["1"]["flip_rate"] == 0.0  # the ring is symmetric
    found = stress.warnings(shortcut, 0.2)
    assert found and "frame_black at strength 0.2 changes 100%" in found[0]

    robust = stress.run(linear_classifier(CENTRE), images, labels, transforms, seed=0, batch_size=5)
    assert robust["transforms"]["frame_black"]["0.2"]["flip_rate"] == 0.0
    # exactly 0 in exact arithmetic (the centre reader never sees the frame); float32 resizing and softmax
    # rounding move it by far less than 1e-3
    assert abs(robust["transforms"]["frame_black"]["0.2"]["mean_probability_change"]["covid"]) < 1e-3
    assert stress.warnings(robust, 0.2) == []


def test_lungs_removed_a_model_that_reads_the_border_stays_above_chance_and_one_that_reads_the_lungs_does_not():
    """Maguolo & Nanni's test as a known answer: half the films framed black (called COVID-19 by the
    border reader, and they are COVID-19 here), half not."""
    images = [nuisance.frame(film(k), 0.1, 0) if k % 2 == 0 else film(k) for k in range(24)]
    labels = ["covid" if k % 2 == 0 else "normal" for k in range(24)]
    tests = {"lungs_removed": (0.7,), "lungs_only": (0.7,)}

    border = stress.run(linear_classifier(KEYED), images, labels, tests, seed=0, batch_size=8)
    assert border["chance"] == 0.5 and border["baseline"]["accuracy"] == 1.0
    verdicts = stress.lung_verdicts(border)
    assert verdicts["lungs_removed 0.7"]["accuracy"] == 1.0 and verdicts["lungs_removed 0.7"]["above_chance"]
    assert any("lung fields blanked" in w for w in stress.warnings(border, 0.2))

    lungs = stress.run(linear_classifier(CENTRE), images, labels, tests, seed=0, batch_size=8)
    removed = stress.lung_verdicts(lungs)["lungs_removed 0.7"]
    assert removed["accuracy"] == 0.5 and not removed["above_chance"]  # every film alike without its centre
    assert not any("lung fields blanked" in w for w in stress.warnings(lungs, 0.2))


def test_a_model_keyed_on_the_source_look_calls_the_controls_covid_and_one_that_ignores_it_does_not():
    """A known answer: the controls carry the COVID-19 collection's look (framed figures) and no
    COVID-19; the other source's normal films are plain. The border reader calls every control COVID-19."""
    framed = [nuisance.frame(film(k), 0.1, 0) for k in range(10)]
    plain = [film(100 + k) for k in range(10)]
    for classifier, expected in ((linear_classifier(KEYED), 1.0), (linear_classifier(CENTRE), 0.0)):
        called = classifier.predict_gray(framed, 4).argmax(axis=1)
        others = classifier.predict_gray(plain, 4).argmax(axis=1)
        scored = pd.DataFrame({"id": range(10), "label": "normal", "source": "covid", "finding": "No Finding",
                               "predicted": [CLASSES[i] for i in called]})
        test = pd.DataFrame({"id": range(10), "label": "normal", "source": "kermany",
                             "predicted": [CLASSES[i] for i in others]})
        summary = controls.summarize(scored, test, "covid", 0.95)
        assert summary["called_screening"]["rate"] == expected
        assert summary["other_source_called_screening"]["rate"] == 0.0
        assert summary["by_finding"]["No Finding"]["n"] == 10
        words = controls.verdict(summary)
        assert ("reads the source's look" in words) == (expected == 1.0)


def test_a_model_keyed_on_the_source_look_fails_the_external_source_and_one_keyed_on_content_does_not():
    """A known answer. Training sources: COVID-19 films are framed (the publication look) and carry
    the disease (a dark centre); normal films are plain and clear. The external hospital's films are never
    framed: its COVID-19 films have the dark centre, its normal films not. The border reader looks perfect on
    the test split and misses every external COVID-19 film; the centre reader gets both right."""
    def sick(k: int) -> np.ndarray:
        image = film(k)
        image[60:164, 60:164] = 40  # what the lungs show
        return image

    test_images = [nuisance.frame(sick(k), 0.1, 0) for k in range(8)] + [film(50 + k) for k in range(8)]
    external_images = [sick(200 + k) for k in range(10)] + [film(300 + k) for k in range(10)]
    labels = ["covid"] * 8 + ["normal"] * 8
    for classifier, carries in ((linear_classifier(KEYED), False), (linear_classifier(CENTRE), True)):
        test = pd.DataFrame({"label": labels, "source": ["covid"] * 8 + ["kermany"] * 8,
                             "predicted": [CLASSES[i] for i in classifier.predict_gray(test_images, 8).argmax(axis=1)]})
        external = pd.DataFrame({"label": ["covid"] * 10 + ["normal"] * 10, "source": "actualmed",
                                 "predicted": [CLASSES[i] for i in
                                               classifier.predict_gray(external_images, 8).argmax(axis=1)]})
        assert (test["predicted"] == test["label"]).all()  # both look perfect on the test split
        summary = controls.summarize_external(external, test, "covid", CLASSES, 0.95)
        assert summary["internal"]["sensitivity"]["rate"] == 1.0
        assert summary["sensitivity"]["rate"] == (1.0 if carries else 0.0)
        assert summary["specificity"]["rate"] == 1.0  # plain normal films are normal to both
        source = summary["by_source"]["actualmed"]
        assert source["answers"]["covid"] == (10 if carries else 0) and source["sensitivity"]["n"] == 10
        assert source["by_class"]["normal"]["called_normal"]["rate"] == 1.0
        warned = controls.external_warnings(summary)
        assert bool(warned) != carries and (carries or "covid sensitivity on the external source(s) is 0%" in warned[0])


def test_a_new_transform_is_its_function_its_entry_and_its_strengths(monkeypatch, tmp_path):
    """ARCHITECTURE.md, "Adding a stress transform": a function and its TRANSFORMS entry in
    coronet.imaging.nuisance, its strengths in params.yaml; params check them, the stress step runs it and
    writes it to stress.json, the figure and the model card."""
    monkeypatch.setitem(nuisance.TRANSFORMS, "invert", nuisance.Transform(
        lambda gray, strength, rng: 255 - gray if strength else gray, 0, 1, what="black for white (1)"))
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    raw["evaluate"]["stress"]["transforms"] = {"invert": [2]}
    with pytest.raises(ParamsError, match=r"invert.*\[0, 1\]"):
        EvaluateParams.parse(Section(raw))
    raw["evaluate"]["stress"]["transforms"] = {"invert": [1]}
    cfg = EvaluateParams.parse(Section(raw)).stress

    files = []
    for k in range(6):
        files.append(tmp_path / f"{k}.png")
        files[-1].write_bytes(encoded(film(k)))
    test = pd.DataFrame({"path": [str(f) for f in files], "label": ["normal"] * 6})
    results = stress_tests(linear_classifier(KEYED), test, cfg, 0, 3, 0.95, tmp_path / "stress.json",
                           tmp_path / "stress.png", "covid")
    # The keyed model calls a bright border normal and a dark one covid: inverted, every answer flips.
    assert results.transforms["invert"]["1"]["flip_to"]["covid"] == 1.0
    assert (tmp_path / "stress.png").stat().st_size > 0
    assert "invert" in stress_section(results, CLASSES)
