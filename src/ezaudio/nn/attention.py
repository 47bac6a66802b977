"""Multi-head attention with QK-norm, RoPE and SDPA; cross-attention with cacheable keys."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from ezaudio.nn.layers import make_norm
from ezaudio.nn.rope import apply_rope


class Attention(nn.Module):
    """Self- or cross-attention (official parameter names ``to_q/to_k/to_v/norm_q/norm_k/proj``).

    QK-norm normalises each head's queries and keys (over ``head_dim``)
    before RoPE, as in the official EzAudio-DiT.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        context_dim: int | None = None,
        qkv_bias: bool = False,
        qk_norm: str = "layernorm",
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        kv_dim = dim if context_dim is None else context_dim
        self.to_q = nn.Linear(dim, dim, bias=qkv_bias)
        self.to_k = nn.Linear(kv_dim, dim, bias=qkv_bias)
        self.to_v = nn.Linear(kv_dim, dim, bias=qkv_bias)
        self.norm_q = make_norm(qk_norm, self.head_dim)
        self.norm_k = make_norm(qk_norm, self.head_dim)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)  # [B, H, L, Dh]

    def keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised keys and values [B, H, J, Dh] of ``context`` [B, J, D]; cacheable."""
        keys = self.norm_k(self._heads(self.to_k(context)))
        values = self._heads(self.to_v(context))
        return keys, values

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None = None,
        keys_values: tuple[torch.Tensor, torch.Tensor] | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Attend from ``x`` [B, L, D] to itself, or to precomputed ``keys_values``.

        ``attn_mask`` is boolean, True where a key may be attended, broadcastable
        to [B, H, L, J].
        """
        batch, length, dim = x.shape
        queries = self.norm_q(self._heads(self.to_q(x)))
        if keys_values is None:
            keys, values = self.keys_values(x)
        else:
            keys, values = keys_values
        if rope is not None:
            cos, sin = rope
            queries = apply_rope(queries, cos, sin)
            keys = apply_rope(keys, cos, sin)
        out = F.scaled_dot_product_attention(queries, keys, values, attn_mask=attn_mask)
        out = out.transpose(1, 2).reshape(batch, length, dim)  # [B, L, D]
        return self.proj(out)
