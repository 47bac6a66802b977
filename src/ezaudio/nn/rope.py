"""Rotary position embedding (RoFormer, Su et al. 2021), "rotate half" layout."""

from __future__ import annotations

import torch


def rope_tables(
    length: int, head_dim: int, device: torch.device, base: float = 10000.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine and sine tables, each [1, 1, length, head_dim], in float32.

    Frequencies theta_i = base^(-2i / head_dim), repeated for both halves.
    """
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim))
    positions = torch.arange(length, device=device, dtype=torch.float32)
    freqs = torch.outer(positions, inv_freq)  # [L, head_dim / 2]
    angles = torch.cat((freqs, freqs), dim=-1)  # [L, head_dim]
    return angles.cos()[None, None], angles.sin()[None, None]


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    first, second = x.chunk(2, dim=-1)
    return torch.cat((-second, first), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate ``x`` [B, H, L, head_dim] by position; computed in float32, returned in x's dtype."""
    x32 = x.float()
    return (x32 * cos + _rotate_half(x32) * sin).type_as(x)
