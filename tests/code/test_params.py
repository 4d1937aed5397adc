"""Code tier: every params section parsed once into its typed object, and every bad value one ParamsError
naming the key."""

from __future__ import annotations

import copy

import pytest
import yaml

from conftest import ROOT
from coronet.errors import ParamsError
from coronet.params import (
    ClassScheme,
    DownloadParams,
    EvaluateParams,
    MergeParams,
    ResizeParams,
    Section,
    ServingParams,
    SplitParams,
    TrackingParams,
    TrainParams,
    load_params,
)

PARSERS = {"download": DownloadParams, "merge": MergeParams, "resize": ResizeParams, "split": SplitParams,
           "train": TrainParams, "evaluate": EvaluateParams, "serving": ServingParams, "tracking": TrackingParams}
RAW = yaml.safe_load((ROOT / "params.yaml").read_text())


def with_value(dotted: str, value: object) -> Section:
    params = copy.deepcopy(RAW)
    node = params
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = value
    return Section(params)


def test_the_repository_params_parse_into_typed_sections():
    params = load_params(ROOT / "params.yaml")
    train = TrainParams.parse(params)
    assert (train.image_size, train.weights, train.learning_rate, train.epochs, train.batch_size) == (
        150, "imagenet", 1e-4, 80, 10)
    assert train.augment.rotation_deg == 50.0 and train.augment.vertical_flip is True
    assert train.nuisance.active == {} and (train.warmup_epochs, train.clipnorm) == (0, None)  # off in the paper's run
    assert MergeParams.parse(params).controls.role == "evaluate"
    assert DownloadParams.parse(params).archives["covid"].filename == "covid-chestxray-dataset.zip"
    stress = EvaluateParams.parse(params).stress.transforms
    assert stress["lungs_removed"] == (0.7,) and stress["frame_median"] == (0.1, 0.2)
    assert ClassScheme.parse(params).groups["pneumonia"] == ["pneumonia_bacterial", "pneumonia_viral"]


@pytest.mark.parametrize("section", sorted(PARSERS))
@pytest.mark.parametrize("value", [None, [1, 2], "text"])
def test_a_section_that_is_not_a_mapping_is_one_error(section, value):
    """`evaluate: null` (and serving, tracking, ...) gave tracebacks."""
    with pytest.raises(ParamsError, match=rf"params.yaml: {section} must be a mapping"):
        PARSERS[section].parse(with_value(section, value))


@pytest.mark.parametrize(("key", "value", "says"), [
    ("evaluate.stress", None, "evaluate.stress must be a mapping"),
    ("evaluate.stress.transforms", None, "evaluate.stress.transforms must be a mapping"),
    ("evaluate.stress.transforms", ["jpeg"], "evaluate.stress.transforms must be a mapping"),
    ("evaluate.stress.transforms.jpeg", 5, "evaluate.stress.transforms.jpeg must be a list of strengths"),
    ("evaluate.stress.transforms.blur", [0.1], "names unknown transform(s) ['blur']"),
])
def test_stress_sections_of_the_wrong_shape(key, value, says):
    with pytest.raises(ParamsError, match=re_escape(says)):
        EvaluateParams.parse(with_value(key, value))


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


@pytest.mark.parametrize(("transform", "strength", "says"), [
    ("frame_median", -0.1, "frame_median takes strengths in [0, 0.5)"),
    ("frame_black", 0.5, "frame_black takes strengths in [0, 0.5)"),
    ("crop_zoom", -0.2, "crop_zoom takes strengths in [0, 0.5)"),
    ("crop_zoom", 0.5, "crop_zoom takes strengths in [0, 0.5)"),
    ("downscale", 1, "downscale takes strengths in [0, 1)"),
    ("contrast", -1, "contrast takes strengths in (-1, 3]"),
    ("jpeg", 1.0, "jpeg takes strengths in [0, 1)"),
    ("hflip", 0.5, "hflip takes 0 or 1"),
    ("lungs_removed", 1.0, "lungs_removed takes strengths in [0, 1)"),
])
def test_each_stress_transform_has_its_own_valid_range(transform, strength, says):
    """Negative frames and crops painted or zoomed the wrong region; frame or crop >= 0.5,
    downscale 1 and contrast -1 gave a constant image, all accepted."""
    with pytest.raises(ParamsError, match=re_escape(says)):
        EvaluateParams.parse(with_value(f"evaluate.stress.transforms.{transform}", [strength]))


@pytest.mark.parametrize(("key", "value"), [("tracking.registered_model", ""), ("tracking.registered_model", None),
                                            ("tracking.experiment", ""), ("tracking.experiment", 123),
                                            ("tracking.experiment", "   ")])
def test_tracking_names_must_be_names(key, value):
    """An empty or numeric name made package exit 0 with a warning and register nothing."""
    with pytest.raises(ParamsError, match=re_escape(f"params.yaml: {key} must be a non-empty name")):
        TrackingParams.parse(with_value(key, value))


@pytest.mark.parametrize(("groups", "says"), [
    ({"covid": ["covid"], "normal": ["normal"], "pneumonia": ["pneumonia_bacterial", "pneumonia_viral", "normal"]},
     "class_groups lists normal in normal and pneumonia"),
    ({"covid": ["covid", "covid"], "normal": ["normal"], "pneumonia": ["pneumonia_bacterial", "pneumonia_viral"]},
     "class_groups lists covid in covid twice"),
    ({"covid": ["covid"], "normal": ["normal"], "pneumonia": ["pneumonia_bacterial", "pneumonia_viral"], "empty": []},
     "class_groups.empty is empty"),
    ({"covid": ["covid"], "normal": ["normal"], "pneumonia": ["pneumonia_bacterial"]},
     "class_groups leaves out ['pneumonia_viral']"),
    ({"lung": ["pneumonia"], "rest": ["covid"]}, "class_groups names ['pneumonia'], which are not in classes"),
])
def test_class_group_errors_name_the_class_or_group(groups, says):
    """The message did not say which class was listed twice or which group was empty."""
    with pytest.raises(ParamsError, match=re_escape(says)):
        ClassScheme.parse(with_value("class_groups", groups))


@pytest.mark.parametrize(("key", "value", "says"), [
    ("merge.controls.role", "sometimes", "merge.controls.role must be one of 'evaluate', 'train', 'off'"),
    ("merge.controls.classes.tuberculosis", ["TB"], "merge.controls.classes names 'tuberculosis', which is not in"),
    ("merge.controls.classes.normal", ["No Finding", "SARS"], "maps finding 'SARS' twice (pneumonia_viral and normal)"),
    ("merge.controls.classes.normal", ["no finding", "No Finding"], "maps finding 'No Finding' twice"),
    ("merge.controls.reject", ["todo", "SARS"], "merge.controls.reject lists ['sars'], which merge.controls.classes"),
    # `reject: [1, 2]` was a traceback in merge
    ("merge.controls.reject", [1, 2], "merge.controls.reject must be a non-empty list of distinct names"),
])
def test_a_bad_control_mapping_is_one_error(key, value, says):
    """A class not in classes, a finding mapped twice, an unknown role."""
    with pytest.raises(ParamsError, match=re_escape(says)):
        MergeParams.parse(with_value(key, value))


@pytest.mark.parametrize(("key", "value", "says"), [
    ("train.nuisance.blur", {"p": 0.5, "strength": [0, 1]}, "train.nuisance names unknown augmentation 'blur'"),
    ("train.nuisance.frame.p", 1.5, "train.nuisance.frame.p must be a number in [0, 1]"),
    ("train.nuisance.frame.strength", [0.3, 0.1], "must be [low, high] with low <= high"),
    ("train.nuisance.frame.strength", [0.1, 0.6], "frame takes strengths in [0, 0.5)"),
    ("train.warmup_epochs", -1, "train.warmup_epochs must be an integer >= 0"),
    ("train.clipnorm", 0, "train.clipnorm must be a number >= 0.001"),
    ("train.clipnorm", 1e-300, "train.clipnorm must be a number >= 0.001"),  # accepted: no step moved a weight
    ("train.weights", 3, "train.weights must be imagenet, none or a path"),
    ("train.warmup_epochs", 81, "train.warmup_epochs (81) is more than train.epochs (80)"),
])
def test_bad_train_values_name_their_key(key, value, says):
    with pytest.raises(ParamsError, match=re_escape(says)):
        TrainParams.parse(with_value(key, value))


def test_none_spellings_of_weights_mean_from_scratch():
    for spelling in ("none", "None", "", None):
        assert TrainParams.parse(with_value("train.weights", spelling)).weights is None
    assert TrainParams.parse(with_value("train.weights", "ImageNet")).weights == "imagenet"


def test_reject_given_as_one_string_is_one_finding_not_its_letters():
    """`-S merge.controls.reject=todo` gives a string; it was read as t, o, d, o, and the
    `todo` rows became scored controls."""
    assert MergeParams.parse(with_value("merge.controls.reject", "todo")).controls.reject == ("todo",)
    assert MergeParams.parse(with_value("merge.controls.reject", None)).controls.reject == ()


@pytest.mark.parametrize(("section", "key"), [
    ("train", "epoch"), ("train.augment", "rotation"), ("train.nuisance.frame", "prob"), ("merge", "view"),
    ("merge.controls", "roles"), ("download", "mirrors"), ("download.synthetic", "images"),
    ("download.archives.covid", "sha"), ("resize", "sizes"), ("split", "testsize"), ("evaluate", "resamples"),
    ("evaluate.stress", "transform"), ("serving", "rows"), ("tracking", "experiments"),
])
def test_an_unknown_key_is_one_error_not_ignored(section, key):
    """A misspelt key (`epoch: 5`) was accepted without a word, the stage running with the
    value the user meant to change."""
    parser = PARSERS[section.split(".")[0]]
    with pytest.raises(ParamsError, match=re_escape(f"params.yaml: {section} has unknown key(s) ['{key}'] (a typo?)")):
        parser.parse(with_value(f"{section}.{key}", 5))


def test_an_empty_stress_list_is_refused_not_a_silent_loss_of_the_lungs_removed_test():
    from coronet.params import EvaluateParams

    with pytest.raises(ParamsError, match=re_escape("evaluate.stress.transforms lists nothing")):
        EvaluateParams.parse(with_value("evaluate.stress.transforms", {}))


@pytest.mark.parametrize(("roles", "says"), [
    ({"actualmd": {"role": "external"}}, "merge.sources names ['actualmd'], which download.archives does not"),
    ({"nosuch": {"role": "train"}}, "merge.sources names ['nosuch']"),
    ({"kermany": {"role": "train", "classes": {"normal": ["No finding"]}}},
     "merge.sources.kermany.classes is set, but the kermany source does not read it"),
])
def test_merge_sources_must_name_downloaded_sources_that_read_what_is_set(roles, says):
    """A typo (`actualmd:`) dropped the external hospital without a word: its rows went to rejected.csv as
    `finding`, and any `merge.sources.nosuch` was accepted."""
    from coronet.data import sources

    cfg = MergeParams.parse(with_value("merge.sources", roles))
    with pytest.raises(ParamsError, match=re_escape(says)):
        sources.check_roles(cfg.sources, ["covid", "kermany", "actualmed"])
    sources.check_roles(MergeParams.parse(with_value("merge.sources", {})).sources, ["covid", "kermany"])
