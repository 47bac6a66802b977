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
        """The shadow weights as they are held (sharded ``DTensor`` shards under FSDP)."""
        return dict(self.shadow)

    def full_state_dict(self) -> dict[str, torch.Tensor]:
        """The shadow weights as plain full tensors; under FSDP the shadow is sharded like
        the model and this gathers it (a collective: every process must call it)."""
        from torch.distributed.tensor import DTensor

        return {k: v.full_tensor() if isinstance(v, DTensor) else v for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor], updates: int) -> None:
        """Load full tensors (as :meth:`full_state_dict` gives); sharded shadows take their
        own shard of each (under FSDP every process must call it)."""
        from torch.distributed.tensor import DTensor, distribute_tensor

        for name, value in state.items():
            shadow = self.shadow[name]
            if isinstance(shadow, DTensor):
                value = distribute_tensor(
                    value.to(shadow.device, shadow.dtype), shadow.device_mesh, shadow.placements
                )
            shadow.copy_(value)
        self.updates = updates

    def copy_to(self, module: nn.Module) -> None:
        """Load the averaged weights into ``module`` (same architecture)."""
        own = module.state_dict()
        module.load_state_dict({k: v.to(own[k].dtype) for k, v in self.full_state_dict().items()})
