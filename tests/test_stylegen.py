"""rlcore.stylegen: random editing styles for training the style prior."""

import dataclasses

import numpy as np
import pytest
import torch

from rlcore import editor, stylegen
from rlcore.color import srgb_to_lab
from rlcore.data import random_crops
from rlcore.reward import mean_delta_e
from tests.photos import photo

PHOTOS = ("astronaut", "chelsea", "coffee", "china", "flower", "rocket")


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small batches run fastest on one thread, and the machine's other cores may be busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def thumbs() -> torch.Tensor:
    """48 random 64x64 crops of real photos."""
    images = [photo(name) for name in PHOTOS]
    return torch.from_numpy(random_crops(images, 48, np.random.default_rng(0)))


def styles_with(**fields) -> stylegen.Styles:
    """One composition style: identity except the given fields."""
    styles = stylegen.identity_styles(1)
    for name, value in fields.items():
        old = getattr(styles, name)
        setattr(styles, name, torch.as_tensor(value, dtype=old.dtype).reshape(old.shape))
    return styles


def test_same_seed_same_styles_and_edits(thumbs):
    a = stylegen.random_styles(64, torch.Generator().manual_seed(7))
    b = stylegen.random_styles(64, torch.Generator().manual_seed(7))
    c = stylegen.random_styles(64, torch.Generator().manual_seed(8))
    for field in dataclasses.fields(stylegen.Styles):
        assert torch.equal(getattr(a, field.name), getattr(b, field.name)), field.name
    assert not torch.equal(a.contrast, c.contrast)
    which = torch.arange(len(thumbs)) % 64
    after_a, sliders_a = stylegen.apply(a, which, thumbs)
    after_b, sliders_b = stylegen.apply(b, which, thumbs)
    assert torch.equal(after_a, after_b)
    assert torch.equal(sliders_a.nan_to_num(-999), sliders_b.nan_to_num(-999))


def test_shapes_dtypes_and_any_size():
    styles = stylegen.random_styles(16, torch.Generator().manual_seed(0))
    for shape in ((16, 17, 23, 3), (16, 1, 1, 3), (16, 64, 96, 3)):
        images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
        afters, sliders = stylegen.apply(styles, torch.arange(16), images)
        assert afters.shape == images.shape and afters.dtype == torch.uint8
        assert sliders.shape == (16, len(editor.ADJUSTMENTS)) and sliders.dtype == torch.float32
    empty, sliders = stylegen.apply(styles, torch.zeros(0, dtype=torch.long), images[:0])
    assert empty.shape == images[:0].shape and sliders.shape == (0, 12)
    with pytest.raises(ValueError):
        stylegen.apply(styles, torch.arange(3), images)


def test_slider_styles_are_exactly_the_editor_with_the_returned_sliders(thumbs):
    styles = stylegen.random_styles(200, torch.Generator().manual_seed(1))
    which = torch.arange(len(thumbs)) % 200
    afters, sliders = stylegen.apply(styles, which, thumbs)
    is_slider = styles.slider_only[which]
    assert 0 < int(is_slider.sum()) < len(thumbs)
    # Compositions: NaN rows. Slider styles: integers in [-100, 100] that reproduce the after exactly.
    assert sliders[~is_slider].isnan().all()
    exact = sliders[is_slider]
    assert not exact.isnan().any()
    assert torch.equal(exact, exact.round()) and exact.abs().max() <= 100
    assert (exact != 0).any()
    assert torch.equal(afters[is_slider], editor.apply_batch(thumbs[is_slider], exact))


def test_a_composition_may_start_with_a_slider_step(thumbs):
    styles = styles_with(saturation=-1.0)
    slider_first = styles_with(saturation=-1.0, slider_first=True)
    slider_first.slider_bias[0, editor.ADJUSTMENTS.index("exposure")] = 50.0
    which = torch.zeros(len(thumbs), dtype=torch.long)
    plain, _ = stylegen.apply(styles, which, thumbs)
    brighter, sliders = stylegen.apply(slider_first, which, thumbs)
    assert sliders.isnan().all()
    assert brighter.float().mean() > plain.float().mean() + 10


def test_full_exposure_normalisation_adapts_to_the_photo(thumbs):
    """A dark and a bright version of the same photos come out equally bright; a fixed shift does not."""
    exposure = editor.ADJUSTMENTS.index("exposure")
    dark_sliders, bright_sliders = torch.zeros(len(thumbs), 12), torch.zeros(len(thumbs), 12)
    dark_sliders[:, exposure], bright_sliders[:, exposure] = -60, 25  # -1.2 EV, +0.5 EV
    dark, bright = editor.apply_batch(thumbs, dark_sliders), editor.apply_batch(thumbs, bright_sliders)

    def lightness(images):
        return srgb_to_lab(images)[..., 0].mean(dim=(1, 2))

    which = torch.zeros(len(thumbs), dtype=torch.long)
    normalise = styles_with(exposure_degree=1.0, exposure_key=0.18)
    fixed = styles_with(exposure_offset=0.5)
    assert (lightness(bright) - lightness(dark)).mean() > 15
    gap = lightness(stylegen.apply(normalise, which, bright)[0]) - lightness(
        stylegen.apply(normalise, which, dark)[0]
    )
    assert gap.abs().mean() < 3
    gap = lightness(stylegen.apply(fixed, which, bright)[0]) - lightness(
        stylegen.apply(fixed, which, dark)[0]
    )
    assert gap.mean() > 10


def test_black_and_white_is_grey_and_identity_changes_nothing(thumbs):
    which = torch.zeros(len(thumbs), dtype=torch.long)
    grey, _ = stylegen.apply(styles_with(saturation=-1.0), which, thumbs)
    assert (grey.int().amax(dim=3) - grey.int().amin(dim=3)).max() <= 1
    same, sliders = stylegen.apply(stylegen.identity_styles(1), which, thumbs)
    assert torch.equal(same, thumbs) and sliders.isnan().all()


def test_styles_differ_and_look_like_edits(thumbs):
    """Different styles give different afters; strengths are those of real edits; nothing breaks."""
    n_styles = 12
    styles = stylegen.random_styles(n_styles, torch.Generator().manual_seed(3))
    images = thumbs[:16]
    which = torch.arange(n_styles).repeat_interleave(len(images))
    afters, _ = stylegen.apply(styles, which, images.repeat(n_styles, 1, 1, 1))
    afters = afters.reshape(n_styles, len(images), *images.shape[1:])
    pairwise = [
        float(mean_delta_e(afters[i], srgb_to_lab(afters[j])).mean())
        for i in range(n_styles)
        for j in range(i + 1, n_styles)
    ]
    assert np.median(pairwise) > 3.0
    assert min(pairwise) > 0.5

    # Strength over many (style, photo) samples: median in the range of real edits.
    many = stylegen.random_styles(len(thumbs) * 4, torch.Generator().manual_seed(4))
    befores = thumbs.repeat(4, 1, 1, 1)
    afters, _ = stylegen.apply(many, torch.arange(len(befores)), befores)
    change = mean_delta_e(afters, srgb_to_lab(befores))
    assert torch.isfinite(change).all()
    assert 4.0 < float(change.median()) < 15.0
    assert float(change.max()) < 40.0
    # Not washed out: few pixels clipped beyond what the photos already have.
    clipped = ((afters == 0) | (afters == 255)).all(dim=3).float().mean()
    clipped_before = ((befores == 0) | (befores == 255)).all(dim=3).float().mean()
    assert float(clipped) < float(clipped_before) + 0.05
