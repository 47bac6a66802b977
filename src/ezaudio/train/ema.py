"""Exponential moving average of network weights."""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    """Float32 shadow copy of a module's parameters: shadow = d * shadow + (1 - d) * param.

    Buffers are copied as they are. ``decay`` warms up as min(decay, (1 + n) / (10 + n))
    over the first updates so early weights are not frozen in.
    """

    def __init__(self, module: nn.Module, decay: float) -> None:
        self.decay = decay
        self.updates = 0
        self.shadow = {k: v.detach().float().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        self.updates += 1
        decay = min(self.decay, (1 + self.updates) / (10 + self.updates))
        params = dict(module.named_parameters())
        for name, value in module.state_dict().items():
            shadow = self.shadow[name]
            if name in params and value.is_floating_point():
                shadow.mul_(decay).add_(value.detach().float(), alpha=1 - decay)
            else:
                shadow.copy_(value.detach())

    def state_dict(self) -> dict[str, torch.Tensor]:
        return dict(self.shadow)

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        for name, value in state.items():
            self.shadow[name].copy_(value)
        self.updates = updates

    def copy_to(self, module: nn.Module) -> None:
        """Load the averaged weights into ``module`` (same architecture)."""
        module.load_state_dict(
            {k: v.to(module.state_dict()[k].dtype) for k, v in self.shadow.items()}
        )
