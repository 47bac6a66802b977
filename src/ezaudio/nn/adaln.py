"""Per-block adaptive LayerNorm parameters: AdaLN-Zero, AdaLN-single and AdaLN-SOLA.

Each variant turns the timestep token into six [B, 1, D] modulations:
shift, scale, gate for self-attention and for the MLP.
"""

from __future__ import annotations

import torch
from torch import nn


class BlockAdaLN(nn.Module):
    """The block-side part of the timestep conditioning.

    - ``ada`` (DiT AdaLN-Zero, CrossDiT baseline): a full Linear(D, 6D) per block.
    - ``ada_single`` (PixArt-alpha): the shared modulation plus a learned
      per-block table [6, D].
    - ``ada_sola`` (EzAudio AdaLN-SOLA, paper II-B): the shared modulation plus
      a per-block low-rank map of the timestep token, B(A t) * alpha / r.
    - ``ada_sola_bias``: AdaLN-SOLA plus the per-block table (official default).
    """

    def __init__(self, dim: int, mode: str, rank: int | None = None, alpha: float | None = None):
        super().__init__()
        self.mode = mode
        self.scale_shift_table: nn.Parameter | None = None
        if mode == "ada":
            self.time_ada = nn.Linear(dim, 6 * dim)
        elif mode == "ada_single":
            self.scale_shift_table = nn.Parameter(torch.zeros(6, dim))
        elif mode in ("ada_sola", "ada_sola_bias"):
            if not rank:
                raise ValueError(f"{mode} needs a rank")
            self.lora_a = nn.Linear(dim, 6 * rank, bias=False)
            self.lora_b = nn.Linear(6 * rank, 6 * dim, bias=False)
            self.scaling = (alpha if alpha is not None else rank) / rank
            if mode == "ada_sola_bias":
                self.scale_shift_table = nn.Parameter(torch.zeros(6, dim))
        else:
            raise ValueError(f"unknown AdaLN mode {mode!r}")

    def forward(self, time_token: torch.Tensor, shared: torch.Tensor | None) -> torch.Tensor:
        """``time_token`` [B, D] (after SiLU), ``shared`` [B, 6D] or None -> [B, 6, D]."""
        batch = time_token.shape[0]
        if self.mode == "ada":
            modulation = self.time_ada(time_token).reshape(batch, 6, -1)
        elif self.mode == "ada_single":
            modulation = self.scale_shift_table[None] + shared.reshape(batch, 6, -1)
        else:
            # AdaLN-SOLA: shared + B(A t) * alpha / r (paper II-B)
            low_rank = self.lora_b(self.lora_a(time_token)) * self.scaling
            modulation = (shared + low_rank).reshape(batch, 6, -1)
            if self.scale_shift_table is not None:
                modulation = self.scale_shift_table[None] + modulation
        return modulation
