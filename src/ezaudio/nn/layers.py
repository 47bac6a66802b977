"""Small building blocks of the DiT: norms, feed-forward, timestep embedding, FiLM."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def make_norm(kind: str, dim: int) -> nn.Module:
    """LayerNorm (eps 1e-5, affine) or RMSNorm (eps 1e-6, weight only)."""
    if kind == "layernorm":
        return nn.LayerNorm(dim)
    if kind == "rmsnorm":
        return nn.RMSNorm(dim, eps=1e-6)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}")


def film(x: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Feature-wise modulation of AdaLN: x * (1 + scale) + shift."""
    return x * (1 + scale) + shift


class GEGLU(nn.Module):
    """Gated GELU projection (Shazeer 2020): value * GELU(gate)."""

    def __init__(self, dim_in: int, dim_out: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out * 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class GELUProjection(nn.Module):
    """Linear then GELU (exact or tanh-approximate)."""

    def __init__(self, dim_in: int, dim_out: int, approximate: str = "none") -> None:
        super().__init__()
        self.proj = nn.Linear(dim_in, dim_out)
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(self.proj(x), approximate=self.approximate)


class FeedForward(nn.Module):
    """Transformer MLP: activation projection, dropout, output projection (``net.0/1/2``)."""

    def __init__(self, dim: int, mult: float, activation: str, dropout: float = 0.0) -> None:
        super().__init__()
        inner = int(dim * mult)
        if activation == "geglu":
            act: nn.Module = GEGLU(dim, inner)
        elif activation == "gelu":
            act = GELUProjection(dim, inner)
        elif activation == "gelu-approximate":
            act = GELUProjection(dim, inner, approximate="tanh")
        else:
            raise ValueError(f"unknown activation {activation!r}")
        self.net = nn.Sequential(act, nn.Dropout(dropout), nn.Linear(inner, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


# Sinusoidal timestep features (DDPM / DiT): [cos(t w_i), sin(t w_i)], w_i = 10000^(-i/half).
def timestep_features(
    timesteps: torch.Tensor, dim: int, max_period: float = 10000.0
) -> torch.Tensor:
    """[B] timesteps (may be fractional) -> [B, dim] float32 features."""
    half = dim // 2
    freqs = torch.exp(
        -math.log(max_period)
        * torch.arange(half, dtype=torch.float32, device=timesteps.device)
        / half
    )
    args = timesteps[:, None].float() * freqs[None]  # [B, half]
    features = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    if dim % 2:
        features = torch.cat([features, torch.zeros_like(features[:, :1])], dim=-1)
    return features


class TimestepEmbedder(nn.Module):
    """Timestep -> [B, dim] token: sinusoidal features (256) through Linear-SiLU-Linear."""

    def __init__(self, dim: int, frequency_dim: int = 256) -> None:
        super().__init__()
        self.frequency_dim = frequency_dim
        self.mlp = nn.Sequential(nn.Linear(frequency_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, timesteps: torch.Tensor) -> torch.Tensor:
        features = timestep_features(timesteps, self.frequency_dim)
        return self.mlp(features.to(self.mlp[0].weight.dtype))


class AbsolutePositionEmbedding(nn.Module):
    """Learned absolute position embedding added to a [B, L, D] sequence."""

    def __init__(self, length: int, dim: int) -> None:
        super().__init__()
        self.abs_pe = nn.Parameter(torch.zeros(1, length, dim))
        nn.init.trunc_normal_(self.abs_pe, std=0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.abs_pe.shape[1]:
            raise ValueError(
                f"sequence of {x.shape[1]} tokens is longer than the position table "
                f"({self.abs_pe.shape[1]})"
            )
        return x + self.abs_pe[:, : x.shape[1]]
