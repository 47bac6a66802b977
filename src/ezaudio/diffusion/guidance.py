"""Classifier-free guidance (paper eq. 1) with rescaling (paper eq. 2-3, Lin et al. 2024)."""

from __future__ import annotations

import torch


# Eq. 1: v_cfg = v_neg + w (v_pos - v_neg)
def classifier_free_guidance(
    v_pos: torch.Tensor, v_neg: torch.Tensor, scale: float | torch.Tensor
) -> torch.Tensor:
    """Guided velocity; ``scale`` may be a float or a [B] tensor (one scale per sample)."""
    if isinstance(scale, torch.Tensor):
        scale = scale.to(v_pos).reshape((-1,) + (1,) * (v_pos.dim() - 1))
    return v_neg + scale * (v_pos - v_neg)


# Eq. 2-3: v_re = v_cfg * std(v_pos) / std(v_cfg);  v = phi v_re + (1 - phi) v_cfg
def rescale_guidance(v_cfg: torch.Tensor, v_pos: torch.Tensor, rescale: float) -> torch.Tensor:
    """Match the guided velocity's std (over all non-batch dims) to the conditional one."""
    dims = list(range(1, v_pos.dim()))
    std_pos = v_pos.std(dim=dims, keepdim=True)
    std_cfg = v_cfg.std(dim=dims, keepdim=True)
    return rescale * (v_cfg * (std_pos / std_cfg)) + (1 - rescale) * v_cfg


def guide(
    v_pos: torch.Tensor,
    v_neg: torch.Tensor,
    scale: float | torch.Tensor,
    rescale: float = 0.0,
) -> torch.Tensor:
    """CFG followed by rescaling when ``rescale`` > 0 (the official order)."""
    guided = classifier_free_guidance(v_pos, v_neg, scale)
    if rescale > 0:
        guided = rescale_guidance(guided, v_pos, rescale)
    return guided
