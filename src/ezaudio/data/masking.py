"""Span masks for masked diffusion modelling (paper II-C-1).

During training part of the latent sequence is given to the DiT as known context and the
rest (the mask, True = masked = to be generated) is what the model must generate. A
masked ratio is drawn uniformly from ``ratio_range`` per sample and that many frames are
masked as runs of at least ``span`` frames (10 frames = 0.2 s of 50 Hz latents). Some
samples are masked whole, which is plain text-to-audio generation.

Exact guarantees of :func:`span_mask`, for ``L = frames >= 1`` and ``s = min(span, L)``:

* masked frames ``m = min(L, max(s, round_half_up(r * L)))`` for the drawn ratio ``r``
  in ``[lo, hi]``, so ``max(s, round_half_up(lo * L)) <= m <= max(s, round_half_up(hi * L))``:
  the masked fraction is ``r`` to within half a frame, except that at least one whole
  span is always masked (as the official ``min_masks=1``);
* every maximal run of masked frames is at least ``s`` long (so at least ``span`` when
  ``L >= span``; a clip shorter than ``span`` is masked whole);
* every unmasked gap *between* two masked runs is at least ``s`` long as well (the gaps
  before the first and after the last run may be shorter, or empty), so no run is split
  by a hole of a frame or two;
* the number of runs is uniform over what fits, the run lengths and gap lengths are
  uniform over their compositions, and all randomness comes from ``generator``.

Differences from the official ``compute_mask_indices``: that one drops
``floor(r * L / span + u)`` spans of exactly ``span`` frames at random starts and lets
them overlap, so it masks fewer frames than asked (about 65% at ``r = 1``, L = 500)
and uses numpy's global RNG. Here the count is exact and the RNG is the given torch one.
"""

from __future__ import annotations

import itertools
import math

import torch

from ezaudio.errors import InvalidInputError

# Official EzAudio settings (``mask_ratio``, ``mask_span`` and ``1 - mae_prob``).
DEFAULT_RATIO_RANGE = (0.25, 1.0)
DEFAULT_SPAN = 10
DEFAULT_FULL_MASK_PROB = 0.75


# Paper II-C-1: masked diffusion modelling, span masks of a random ratio.
def span_mask(
    batch: int,
    frames: int,
    ratio_range: tuple[float, float] = DEFAULT_RATIO_RANGE,
    span: int = DEFAULT_SPAN,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Random span masks, bool [batch, frames] on the CPU (True = masked, to generate).

    See the module docstring for the exact guarantees. ``generator`` None uses torch's
    global RNG; the same seeded generator always gives the same masks.
    """
    lo, hi = _check(batch, frames, ratio_range, span)
    mask = torch.zeros(batch, frames, dtype=torch.bool)  # [B, L]
    if frames == 0:
        return mask
    ratios = lo + (hi - lo) * torch.rand(batch, generator=generator, dtype=torch.float64)  # [B]
    for row, ratio in zip(mask, ratios.tolist()):
        count = masked_frame_count(min(max(ratio, lo), hi), frames, span)
        for start, length in _runs(frames, count, min(span, frames), generator):
            row[start : start + length] = True
    return mask


def training_masks(
    batch: int,
    frames: int,
    ratio_range: tuple[float, float] = DEFAULT_RATIO_RANGE,
    span: int = DEFAULT_SPAN,
    full_mask_prob: float = DEFAULT_FULL_MASK_PROB,
    *,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Training masks, bool [batch, frames] (True = masked): each sample is masked whole
    with probability ``full_mask_prob``, otherwise it gets a :func:`span_mask`.

    ``full_mask_prob`` is the share of plain text-to-audio samples. The official code
    names the complement: its ``mae_prob`` (0.25, kept as ``DiTConfig.mask_prob``) is the
    probability of a *partial* span mask, so the official setting is
    ``full_mask_prob = 1 - mae_prob = 0.75`` (the default here).
    """
    if not 0.0 <= full_mask_prob <= 1.0:
        raise InvalidInputError(f"full_mask_prob must be in [0, 1], got {full_mask_prob}")
    full = torch.rand(batch, generator=generator) < full_mask_prob  # [B]
    mask = span_mask(batch, frames, ratio_range, span, generator=generator)  # [B, L]
    mask[full] = True
    return mask


def masked_frame_count(ratio: float, frames: int, span: int) -> int:
    """Frames :func:`span_mask` masks for ``ratio``: round-half-up of ``ratio * frames``,
    at least one span (``min(span, frames)``) and at most ``frames``."""
    if frames <= 0:
        return 0
    return min(frames, max(min(span, frames), math.floor(ratio * frames + 0.5)))


def _runs(
    frames: int, count: int, span: int, generator: torch.Generator | None
) -> list[tuple[int, int]]:
    """(start, length) of masked runs: ``count`` frames in runs >= span, inner gaps >= span."""
    unmasked = frames - count
    most_runs = min(count // span, unmasked // span + 1)  # >= 1 since span <= count
    runs = int(torch.randint(1, most_runs + 1, (1,), generator=generator))
    lengths = [span + extra for extra in _composition(count - runs * span, runs, generator)]
    spare = unmasked - (runs - 1) * span  # unmasked frames beyond the minimum inner gaps
    gaps = _composition(spare, runs + 1, generator)  # before, between..., after
    starts, position = [], gaps[0]
    for index, length in enumerate(lengths):
        starts.append(position)
        position += length + span + gaps[index + 1]
    return list(zip(starts, lengths))


def _composition(total: int, parts: int, generator: torch.Generator | None) -> list[int]:
    """``parts`` non-negative integers summing to ``total``, uniform over all such lists
    (stars and bars: choose the bar positions among ``total + parts - 1`` slots)."""
    if parts == 1:
        return [total]
    slots = total + parts - 1
    bars = torch.randperm(slots, generator=generator)[: parts - 1].sort().values.tolist()
    edges = [-1, *bars, slots]
    return [right - left - 1 for left, right in itertools.pairwise(edges)]


def _check(
    batch: int, frames: int, ratio_range: tuple[float, float], span: int
) -> tuple[float, float]:
    if batch < 0 or frames < 0:
        raise InvalidInputError(f"batch and frames must be >= 0, got {batch} and {frames}")
    if span < 1:
        raise InvalidInputError(f"span must be >= 1 frame, got {span}")
    lo, hi = (float(value) for value in ratio_range)
    if not 0.0 <= lo <= hi <= 1.0:
        raise InvalidInputError(
            f"ratio_range must satisfy 0 <= low <= high <= 1, got {ratio_range}"
        )
    return lo, hi
