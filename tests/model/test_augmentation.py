"""Model tier: the nuisance augmentation (params train.nuisance) appears at its configured rates on training
batches only, never in validation, test or prediction; it is a pure function of (seed, epoch, image)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from conftest import CLASSES
from coronet.imaging import checks
from coronet.model.dataset import make_dataset, model_input
from coronet.params import NuisanceParams, NuisanceStep

SIZE = 224  # the model input at the resize stage's size: what the nuisance saw is what the batch shows


@pytest.fixture(scope="module")
def films(tmp_path_factory):
    """80 unframed films (noise over a soft gradient: no uniform line anywhere)."""
    folder = tmp_path_factory.mktemp("films")
    rng = np.random.default_rng(0)
    paths = []
    for k in range(80):
        base = np.linspace(60, 200, SIZE)[None, :] + rng.normal(0, 12, (SIZE, SIZE))
        paths.append(str(folder / f"{k}.png"))
        Image.fromarray(np.clip(base, 0, 255).astype(np.uint8)).save(paths[-1])
    return pd.DataFrame({"path": paths, "label": [CLASSES[k % 4] for k in range(80)]})


def framed(batch) -> list[bool]:
    """Which images of a batch carry a uniform frame, by the input checks' own border detector."""
    return [any(f.check == "border" for f in checks.inspect(np.asarray(image[..., 0]).round().astype(np.uint8)))
            for image in batch]


def seen(dataset) -> list[bool]:
    return [flag for images, _ in dataset for flag in framed(images.numpy())]


def test_frames_appear_at_their_rate_on_training_batches_only(films):
    frames = NuisanceParams({"frame": NuisanceStep(p=0.5, low=0.05, high=0.15)})
    training = make_dataset(films, CLASSES, SIZE, 16, nuisance=frames, shuffle=True, seed=3, epochs=2)
    flags = seen(training)
    assert len(flags) == 160
    rate = np.mean(flags)
    assert 0.38 <= rate <= 0.62, rate  # 0.5, within 2.5 standard errors of 160 draws
    # validation, test and prediction batches: the same films, never a frame
    assert not any(seen(make_dataset(films, CLASSES, SIZE, 16)))
    assert not any(framed(np.stack([np.asarray(model_input(np.asarray(Image.open(p)), SIZE))
                                    for p in films["path"][:16]])))


def test_off_means_off_and_rates_follow_p(films):
    for p, low, high in ((0.0, 0.0, 0.0), (1.0, 0.9, 1.0)):
        steps = NuisanceParams({"frame": NuisanceStep(p=p, low=0.05, high=0.15)})
        rate = np.mean(seen(make_dataset(films, CLASSES, SIZE, 16, nuisance=steps, shuffle=True, seed=1)))
        assert low <= rate <= high, (p, rate)


def test_the_augmentation_is_a_function_of_seed_epoch_and_image(films):
    steps = NuisanceParams({"frame": NuisanceStep(0.5, 0.05, 0.15), "marker": NuisanceStep(0.5, 0.1, 0.2),
                            "jpeg": NuisanceStep(0.5, 0.2, 0.6)})

    def epoch(seed: int, first: int) -> np.ndarray:
        ds = make_dataset(films.head(16), CLASSES, SIZE, 16, nuisance=steps, shuffle=True, seed=seed,
                          first_epoch=first, epochs=first + 1)
        return next(iter(ds))[0].numpy()

    np.testing.assert_array_equal(epoch(5, 1), epoch(5, 1))  # a resumed run sees epoch 1 as it was
    assert not np.array_equal(epoch(5, 1), epoch(5, 0)) and not np.array_equal(epoch(5, 1), epoch(6, 1))
