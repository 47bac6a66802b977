"""Span masks of masked diffusion modelling (``ezaudio.data.masking``)."""

from __future__ import annotations

import itertools
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from ezaudio.data.masking import masked_frame_count, span_mask, training_masks
from ezaudio.errors import InvalidInputError


def runs(row: torch.Tensor) -> tuple[list[int], list[int]]:
    """Lengths of the maximal masked runs of a bool row, and of the unmasked gaps
    between two of them (not the gaps at the ends)."""
    groups = [(flag, len(list(group))) for flag, group in itertools.groupby(row.tolist())]
    masked = [length for flag, length in groups if flag]
    inner = [length for flag, length in groups[1:-1] if not flag]
    return masked, inner


def half_up(x: float) -> int:
    return math.floor(x + 0.5)


@st.composite
def mask_settings(draw):
    low = draw(st.floats(0.0, 1.0))
    high = draw(st.floats(low, 1.0))
    return {
        "batch": draw(st.integers(1, 6)),
        "frames": draw(st.integers(10, 600)),
        "ratio_range": (low, high),
        "span": draw(st.integers(1, 20)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def masks_for(settings_: dict) -> torch.Tensor:
    generator = torch.Generator().manual_seed(settings_["seed"])
    return span_mask(
        settings_["batch"],
        settings_["frames"],
        settings_["ratio_range"],
        settings_["span"],
        generator=generator,
    )


@settings(max_examples=150, deadline=None)
@given(mask_settings())
def test_masked_fraction_is_within_the_ratio_bounds(s: dict) -> None:
    mask = masks_for(s)
    frames, span, (low, high) = s["frames"], s["span"], s["ratio_range"]
    assert mask.shape == (s["batch"], frames) and mask.dtype == torch.bool
    least = max(min(span, frames), half_up(low * frames))
    most = max(min(span, frames), half_up(high * frames))
    for count in mask.sum(dim=1).tolist():
        assert least <= count <= most
        # the fraction is within half a frame of the bounds unless one span is more
        if span <= high * frames:
            assert low - 0.5 / frames <= count / frames <= high + 0.5 / frames


@settings(max_examples=150, deadline=None)
@given(mask_settings())
def test_runs_and_inner_gaps_are_at_least_one_span(s: dict) -> None:
    span = min(s["span"], s["frames"])
    for row in masks_for(s):
        masked, inner_gaps = runs(row)
        assert masked, "at least one span is always masked"
        assert min(masked) >= span
        assert not inner_gaps or min(inner_gaps) >= span


@settings(max_examples=50, deadline=None)
@given(mask_settings())
def test_same_seed_same_masks(s: dict) -> None:
    assert torch.equal(masks_for(s), masks_for(s))


def test_other_seed_other_masks() -> None:
    def draw(seed: int) -> torch.Tensor:
        return span_mask(8, 500, generator=torch.Generator().manual_seed(seed))

    assert not torch.equal(draw(0), draw(1))


def test_clip_shorter_than_a_span_is_masked_whole() -> None:
    mask = span_mask(3, 7, (0.0, 0.5), span=10, generator=torch.Generator().manual_seed(0))
    assert mask.all()


def test_exact_ratio_and_edge_sizes() -> None:
    generator = torch.Generator().manual_seed(0)
    assert span_mask(4, 500, (0.3, 0.3), 10, generator=generator).sum(dim=1).tolist() == [150] * 4
    assert span_mask(2, 500, (1.0, 1.0), 10, generator=generator).all()
    assert span_mask(0, 500, generator=generator).shape == (0, 500)
    assert span_mask(3, 0, generator=generator).shape == (3, 0)
    assert masked_frame_count(0.0, 500, 10) == 10
    assert masked_frame_count(0.251, 500, 10) == 126  # 125.5 rounds half up


def test_many_runs_are_used() -> None:
    # Low ratios should not always give a single block.
    mask = span_mask(200, 500, (0.25, 0.25), 10, generator=torch.Generator().manual_seed(0))
    counts = [len(runs(row)[0]) for row in mask]
    assert min(counts) == 1 and max(counts) >= 10


@pytest.mark.parametrize("probability", [0.0, 0.25, 0.75, 1.0])
def test_full_masks_appear_with_the_requested_probability(probability: float) -> None:
    samples = 2000
    mask = training_masks(
        samples, 40, (0.25, 0.5), 10, probability, generator=torch.Generator().manual_seed(3)
    )
    # A partial mask of this size masks at most 20 of 40 frames, so "all" = drawn full.
    full = int(mask.all(dim=1).sum())
    sigma = math.sqrt(samples * probability * (1 - probability))
    assert abs(full - samples * probability) <= 5 * sigma
    partial = mask[~mask.all(dim=1)].sum(dim=1)
    assert ((partial >= 10) & (partial <= 20)).all()


def test_training_masks_are_reproducible() -> None:
    def draw() -> torch.Tensor:
        return training_masks(16, 500, generator=torch.Generator().manual_seed(7))

    assert torch.equal(draw(), draw())


def test_global_numpy_and_torch_rng_are_not_used() -> None:
    import numpy as np

    np_state = np.random.get_state()[1].copy()
    torch_state = torch.random.get_rng_state().clone()
    training_masks(8, 500, generator=torch.Generator().manual_seed(0))
    assert (np.random.get_state()[1] == np_state).all()
    assert torch.equal(torch.random.get_rng_state(), torch_state)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ratio_range": (0.5, 0.25)},
        {"ratio_range": (-0.1, 0.5)},
        {"ratio_range": (0.5, 1.5)},
        {"span": 0},
        {"frames": -1},
        {"full_mask_prob": 1.5},
    ],
)
def test_bad_arguments(kwargs: dict) -> None:
    arguments = {"batch": 2, "frames": 100, **kwargs}
    with pytest.raises(InvalidInputError):
        training_masks(**arguments)
