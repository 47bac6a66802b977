"""EzAudio-DiT (Hai et al. 2024, Sec. II-B): a diffusion transformer over 1-D VAE latents.

Parameter names follow the official ``MaskDiT``/``UDiT`` checkpoint minus its
``model.`` prefix, so official weights load by renaming alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from ezaudio.config import DiTConfig
from ezaudio.nn.adaln import BlockAdaLN
from ezaudio.nn.attention import Attention
from ezaudio.nn.component import Component
from ezaudio.nn.layers import (
    AbsolutePositionEmbedding,
    FeedForward,
    TimestepEmbedder,
    film,
    make_norm,
)
from ezaudio.nn.rope import rope_tables


@dataclass
class ContextCache:
    """Text conditioning prepared once per generation.

    ``keys_values`` holds each block's cross-attention keys and values
    ([B, H, J, Dh] each), in block order; ``attn_mask`` is [B, 1, 1, J] bool.
    """

    keys_values: list[tuple[torch.Tensor, torch.Tensor]]
    attn_mask: torch.Tensor | None

    @property
    def batch_size(self) -> int:
        return self.keys_values[0][0].shape[0] if self.keys_values else 0


@dataclass
class TimeConditioning:
    """Timestep-derived tensors shared by all blocks of one forward pass.

    ``token`` is [B or 1, D] (after SiLU for the AdaLN modes), ``shared`` the
    shared AdaLN output [B or 1, 6D] (AdaLN-single / SOLA), ``final`` the final
    layer's [B or 1, 2D] shift and scale.
    """

    token: torch.Tensor
    shared: torch.Tensor | None
    final: torch.Tensor | None


class DiTBlock(nn.Module):
    """Self-attention (RoPE, QK-norm, AdaLN), cross-attention to text, GEGLU MLP.

    An out-block first fuses the long skip: Linear(LayerNorm([x | skip])).
    """

    def __init__(self, config: DiTConfig, long_skip: bool) -> None:
        super().__init__()
        dim = config.embed_dim
        self.norm1 = make_norm(config.norm, dim)
        self.attn = Attention(
            dim, config.num_heads, qkv_bias=config.qkv_bias, qk_norm=config.qk_norm
        )
        self.has_context = config.context_dim is not None
        if self.has_context:
            # Text states are projected to ``dim`` by the DiT before reaching the blocks.
            self.cross_attn = Attention(
                dim,
                config.num_heads,
                context_dim=dim,
                qkv_bias=config.qkv_bias,
                qk_norm=config.qk_norm,
            )
            self.norm2 = make_norm(config.norm, dim)
            self.norm_context = make_norm(config.norm if config.context_norm else "none", dim)
        self.norm3 = make_norm(config.norm, dim)
        self.mlp = FeedForward(dim, config.mlp_ratio, config.activation)
        self.use_adaln = config.time_fusion != "token"
        if self.use_adaln:
            self.adaln = BlockAdaLN(
                dim, config.time_fusion, config.ada_sola_rank, config.ada_sola_alpha
            )
        self.long_skip = long_skip
        if long_skip:
            self.skip_norm = make_norm(config.norm if config.skip_norm else "none", 2 * dim)
            self.skip_linear = nn.Linear(2 * dim, dim)

    def context_keys_values(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention keys and values for projected text states [B, J, D]."""
        return self.cross_attn.keys_values(self.norm_context(context))

    def forward(
        self,
        x: torch.Tensor,
        time: TimeConditioning,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        context: tuple[torch.Tensor, torch.Tensor] | None,
        context_mask: torch.Tensor | None,
        skip: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x [B, L, D] -> [B, L, D]."""
        if self.long_skip:
            x = self.skip_linear(self.skip_norm(torch.cat([x, skip], dim=-1)))

        if self.use_adaln:
            modulation = self.adaln(time.token, time.shared)  # [B or 1, 6, D]
            shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = modulation.chunk(
                6, dim=1
            )
            # The official gate is (1 - gate), so a zero-initialised AdaLN passes the branch.
            x = x + (1 - gate_msa) * self.attn(film(self.norm1(x), shift_msa, scale_msa), rope=rope)
        else:
            x = x + self.attn(self.norm1(x), rope=rope)

        if self.has_context:
            x = x + self.cross_attn(self.norm2(x), keys_values=context, attn_mask=context_mask)

        if self.use_adaln:
            x = x + (1 - gate_mlp) * self.mlp(film(self.norm3(x), shift_mlp, scale_mlp))
        else:
            x = x + self.mlp(self.norm3(x))
        return x


class FinalBlock(nn.Module):
    """Norm (AdaLN-modulated), Linear to patch values, unpatchify, Conv1d(k=3)."""

    def __init__(self, config: DiTConfig) -> None:
        super().__init__()
        self.latent_channels = config.latent_channels
        self.patch_size = config.patch_size
        self.use_adaln = config.time_fusion != "token"
        self.norm = make_norm(config.norm, config.embed_dim)
        self.linear = nn.Linear(config.embed_dim, config.patch_size * config.latent_channels)
        self.final_layer = (
            nn.Conv1d(config.latent_channels, config.latent_channels, 3, padding=1)
            if config.final_conv
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, final_modulation: torch.Tensor | None) -> torch.Tensor:
        """x [B, T, D] (patch tokens only) -> [B, C, T * patch]."""
        x = self.norm(x)
        if self.use_adaln:
            shift, scale = final_modulation.reshape(final_modulation.shape[0], 2, -1).chunk(
                2, dim=1
            )
            x = film(x, shift, scale)
        x = self.linear(x)  # [B, T, patch * C]
        batch, tokens, _ = x.shape
        x = x.view(batch, tokens, self.patch_size, self.latent_channels)
        x = x.permute(0, 3, 1, 2).reshape(batch, self.latent_channels, tokens * self.patch_size)
        return self.final_layer(x)


class EzAudioDiT(Component):
    """EzAudio-DiT: predicts the velocity of noisy VAE latents given text and known audio.

    ``forward(x, timesteps, context, context_mask, gt, gt_mask)``: ``x`` [B, C, L]
    noisy latents; ``timesteps`` a scalar or [B]; ``context`` [B, J, context_dim]
    text states with ``context_mask`` [B, J] (True = real token); ``gt`` [B, C, L]
    known latents with ``gt_mask`` (True where frames are to be generated;
    [B, C, L], [B, 1, L] or [B, L]). With no ``gt`` every frame is generated.
    """

    config_class = DiTConfig

    def __init__(self, config: DiTConfig) -> None:
        super().__init__(config)
        dim = config.embed_dim
        self.gradient_checkpointing = False
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv1d(
            config.in_channels, dim, kernel_size=config.patch_size, stride=config.patch_size
        )
        if config.abs_pos_length:
            self.x_pe = AbsolutePositionEmbedding(config.abs_pos_length, dim)
        self.time_embed = TimestepEmbedder(dim)
        self.time_act = nn.SiLU()
        self.time_ada: nn.Linear | None = None
        if config.time_fusion == "token":
            self.time_pe = AbsolutePositionEmbedding(1, dim)
            self.extra_tokens = 1
        else:
            self.extra_tokens = 0
            self.time_ada_final = nn.Linear(dim, 2 * dim)
            if config.time_fusion != "ada":
                self.time_ada = nn.Linear(dim, 6 * dim)
        if config.context_dim is not None:
            self.context_embed = nn.Sequential(
                nn.Linear(config.context_dim, dim), nn.SiLU(), nn.Linear(dim, dim)
            )
        half = config.depth // 2
        self.in_blocks = nn.ModuleList(DiTBlock(config, long_skip=False) for _ in range(half))
        self.mid_block = DiTBlock(config, long_skip=False)
        self.out_blocks = nn.ModuleList(
            DiTBlock(config, long_skip=config.long_skip) for _ in range(half)
        )
        self.final_block = FinalBlock(config)
        if config.masked_modelling:
            # Learned embedding for frames that are to be generated (paper II-C-1).
            self.mask_embed = nn.Parameter(torch.zeros(config.latent_channels))
        self._rope_cache: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}
        self.reset_parameters()

    # ------------------------------------------------------------------ init
    def reset_parameters(self) -> None:
        """Training-from-scratch init of the official code: Xavier linears, zeroed AdaLN
        and cross-attention outputs (so a new text path changes nothing at step 0)."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        weight = self.patch_embed.proj.weight
        nn.init.xavier_uniform_(weight.view(weight.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        if self.config.time_fusion != "token":
            for linear in (self.time_ada, self.time_ada_final):
                if linear is not None:
                    nn.init.zeros_(linear.weight)
                    nn.init.zeros_(linear.bias)
        for block in self.blocks():
            if block.use_adaln:
                if block.adaln.mode == "ada":
                    nn.init.zeros_(block.adaln.time_ada.weight)
                    nn.init.zeros_(block.adaln.time_ada.bias)
                elif block.adaln.mode in ("ada_sola", "ada_sola_bias"):
                    nn.init.kaiming_uniform_(block.adaln.lora_a.weight, a=5**0.5)
                    nn.init.zeros_(block.adaln.lora_b.weight)
            if block.has_context:
                nn.init.zeros_(block.cross_attn.proj.weight)
                nn.init.zeros_(block.cross_attn.proj.bias)
        if isinstance(self.final_block.final_layer, nn.Conv1d):
            nn.init.xavier_uniform_(self.final_block.final_layer.weight)
            nn.init.zeros_(self.final_block.final_layer.bias)

    def blocks(self) -> list[DiTBlock]:
        """All blocks in execution order: in-blocks, middle block, out-blocks."""
        return [*self.in_blocks, self.mid_block, *self.out_blocks]

    # ------------------------------------------------------- conditioning
    def prepare_context(
        self, context: torch.Tensor, context_mask: torch.Tensor | None = None
    ) -> ContextCache:
        """Project text states [B, J, context_dim] and compute every block's keys/values once."""
        if self.config.context_dim is None:
            raise ValueError("this DiT has no text conditioning (context_dim is None)")
        if context.dim() != 3 or context.shape[-1] != self.config.context_dim:
            raise ValueError(
                f"context must be [B, J, {self.config.context_dim}], got {list(context.shape)}"
            )
        dtype = self.patch_embed.proj.weight.dtype
        tokens = self.context_embed(context.to(dtype))  # [B, J, D]
        keys_values = [block.context_keys_values(tokens) for block in self.blocks()]
        attn_mask = None
        if context_mask is not None:
            valid = context_mask.to(device=context.device, dtype=torch.bool).clone()  # [B, J]
            # A row with no valid token would attend to nothing (NaN); keep its first token.
            valid[~valid.any(dim=1), 0] = True
            attn_mask = valid[:, None, None, :]  # [B, 1, 1, J]
        return ContextCache(keys_values, attn_mask)

    def time_conditioning(
        self, timesteps: torch.Tensor | float | int, device: torch.device
    ) -> TimeConditioning:
        """Timestep(s) -> the tensors all blocks share. A scalar gives batch-1 tensors."""
        timesteps = torch.as_tensor(timesteps, device=device)
        if timesteps.dim() == 0:
            timesteps = timesteps[None]
        token = self.time_embed(timesteps)  # [B, D]
        if self.config.time_fusion == "token":
            return TimeConditioning(token, None, None)
        token = self.time_act(token)
        shared = self.time_ada(token) if self.time_ada is not None else None
        return TimeConditioning(token, shared, self.time_ada_final(token))

    def masked_input(
        self, x: torch.Tensor, gt: torch.Tensor | None, gt_mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Masked-modelling input [noisy | known or mask embedding | mask] -> [B, 2C + 1, L]."""
        if not self.config.masked_modelling:
            if gt is not None:
                raise ValueError("this DiT was built without masked modelling; gt is not accepted")
            return x
        batch, channels, length = x.shape
        embed = self.mask_embed.to(x.dtype).view(1, channels, 1)
        if gt is None:
            known = embed.expand(batch, channels, length)
            mask = x.new_ones(batch, 1, length)
        else:
            if gt.shape != x.shape:
                raise ValueError(
                    f"gt must have the shape of x {list(x.shape)}, got {list(gt.shape)}"
                )
            if gt_mask is None:
                raise ValueError("gt needs gt_mask (True where frames are to be generated)")
            gt_mask = gt_mask.to(device=x.device, dtype=torch.bool)
            if gt_mask.dim() == 2:
                gt_mask = gt_mask[:, None, :]
            gt_mask = gt_mask.expand(batch, channels, length)
            known = torch.where(gt_mask, embed, gt.to(x.dtype))
            mask = gt_mask[:, :1].to(x.dtype)
        return torch.cat([x, known, mask], dim=1)

    def _rope(self, length: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not self.config.rope:
            return None
        key = (length, device)
        if key not in self._rope_cache:
            self._rope_cache.clear()
            self._rope_cache[key] = rope_tables(length, self.config.head_dim, device)
        return self._rope_cache[key]

    # ------------------------------------------------------------- forward
    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor | float | int,
        context: torch.Tensor | ContextCache | None = None,
        context_mask: torch.Tensor | None = None,
        gt: torch.Tensor | None = None,
        gt_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict the velocity [B, C, L] of noisy latents ``x`` [B, C, L].

        ``context`` may be a :class:`ContextCache` from :meth:`prepare_context`,
        so that text keys/values are computed once per generation.
        """
        if x.dim() != 3 or x.shape[1] != self.config.latent_channels:
            raise ValueError(
                f"x must be [B, {self.config.latent_channels}, L], got {list(x.shape)}"
            )
        if x.shape[-1] % self.config.patch_size:
            raise ValueError(
                f"length {x.shape[-1]} is not a multiple of patch_size {self.config.patch_size}"
            )
        dtype = self.patch_embed.proj.weight.dtype
        x = x.to(dtype)
        batch = x.shape[0]

        tokens = self.patch_embed.proj(self.masked_input(x, gt, gt_mask)).transpose(
            1, 2
        )  # [B, T, D]
        if self.config.abs_pos_length:
            tokens = self.x_pe(tokens)

        cache: ContextCache | None = None
        if self.config.context_dim is not None:
            if context is None:
                raise ValueError("this DiT needs text context (context is None)")
            cache = (
                context
                if isinstance(context, ContextCache)
                else self.prepare_context(context, context_mask)
            )
            if cache.batch_size != batch:
                raise ValueError(f"context batch {cache.batch_size} != latent batch {batch}")

        time = self.time_conditioning(timesteps, x.device)
        if self.config.time_fusion == "token":
            # Stable-Audio-DiT style: the timestep is a prepended token.
            time_token = self.time_pe(time.token[:, None, :]).to(dtype).expand(batch, -1, -1)
            tokens = torch.cat([time_token, tokens], dim=1)  # [B, 1 + T, D]

        rope = self._rope(tokens.shape[1], x.device)
        context_mask_4d = cache.attn_mask if cache is not None else None
        blocks = self.blocks()
        skips: list[torch.Tensor] = []
        for index, block in enumerate(blocks):
            skip = None
            if block.long_skip:
                skip = skips.pop()
            kv = cache.keys_values[index] if cache is not None else None
            tokens = self._run_block(block, tokens, time, rope, kv, context_mask_4d, skip)
            if index < len(self.in_blocks) and self.config.long_skip:
                skips.append(tokens)

        tokens = tokens[:, self.extra_tokens :]
        return self.final_block(tokens, time.final)

    def _run_block(self, block: DiTBlock, *args: object) -> torch.Tensor:
        if self.gradient_checkpointing and self.training and torch.is_grad_enabled():
            return checkpoint(block, *args, use_reentrant=False)
        return block(*args)
