"""One DDIM update (Song et al. 2021, eq. 12) for epsilon- or v-prediction."""

from __future__ import annotations

import math

import torch


def ddim_step(
    model_output: torch.Tensor,
    sample: torch.Tensor,
    alpha_bar: float,
    alpha_bar_prev: float,
    eta: float = 0.0,
    prediction_type: str = "v_prediction",
    generator: torch.Generator | list[torch.Generator] | None = None,
) -> torch.Tensor:
    """x_t -> x_{t_prev}.

    ``alpha_bar`` / ``alpha_bar_prev`` are alpha_bar at t and at the previous
    (less noisy) step. ``eta`` = 0 is deterministic DDIM, 1 is DDPM-like.
    ``generator`` may be a list with one generator per batch row, so that each
    sample's noise is independent of what else is in the batch.
    """
    beta = 1.0 - alpha_bar
    if prediction_type == "v_prediction":
        # x_0 = sqrt(a) x_t - sqrt(1 - a) v ;  eps = sqrt(a) v + sqrt(1 - a) x_t
        clean = math.sqrt(alpha_bar) * sample - math.sqrt(beta) * model_output
        noise = math.sqrt(alpha_bar) * model_output + math.sqrt(beta) * sample
    elif prediction_type == "epsilon":
        noise = model_output
        clean = (sample - math.sqrt(beta) * noise) / math.sqrt(alpha_bar)
    else:
        raise ValueError(f"unknown prediction type {prediction_type!r}")

    # sigma_t^2 = (1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev)   (eq. 16)
    variance = (
        (1.0 - alpha_bar_prev) / beta * (1.0 - alpha_bar / alpha_bar_prev) if beta > 0 else 0.0
    )
    std = eta * math.sqrt(max(variance, 0.0))
    direction = math.sqrt(max(1.0 - alpha_bar_prev - std**2, 0.0)) * noise
    prev = math.sqrt(alpha_bar_prev) * clean + direction
    if eta > 0 and std > 0:
        prev = prev + std * gaussian_like(sample, generator)
    return prev


def gaussian_like(
    sample: torch.Tensor, generator: torch.Generator | list[torch.Generator] | None
) -> torch.Tensor:
    """Standard normal noise shaped like ``sample`` [B, ...], drawn on each generator's device."""
    if isinstance(generator, (list, tuple)):
        if len(generator) != sample.shape[0]:
            raise ValueError(f"{len(generator)} generators for a batch of {sample.shape[0]}")
        rows = [
            torch.randn((1, *sample.shape[1:]), generator=g, device=g.device, dtype=sample.dtype)
            for g in generator
        ]
        return torch.cat([row.to(sample.device) for row in rows])
    device = generator.device if generator is not None else sample.device
    noise = torch.randn(sample.shape, generator=generator, device=device, dtype=sample.dtype)
    return noise.to(sample.device)
