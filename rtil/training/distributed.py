"""Gradient synchronisation for GAN training under Lightning DDP.

Lightning wraps the whole LightningModule (G and D together) in one DistributedDataParallel, and
each manual_backward of a GAN phase uses only part of it, several times per step. Instead of
fighting DDP's reducer (unused parameters, one backward per forward), rtil turns DDP's own
gradient sync off and averages the gradients of the phase's parameters explicitly before each
optimizer step (one flattened all-reduce per phase).
"""

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel


def disable_ddp_gradient_sync(wrapped_model) -> None:
    """Make a DDP-wrapped module skip its own gradient all-reduce (no-op for other modules)."""
    if isinstance(wrapped_model, DistributedDataParallel):
        wrapped_model.require_backward_grad_sync = False


def world_size() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


@torch.no_grad()
def average_gradients(params) -> None:
    """All-reduce (mean) the gradients of `params` across processes; missing grads count as 0."""
    n = world_size()
    if n == 1:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= n
    offset = 0
    for p in params:
        k = p.numel()
        p.grad.copy_(flat[offset:offset + k].view_as(p.grad))
        offset += k


@torch.no_grad()
def average_buffers(buffers) -> None:
    """All-reduce (mean) floating-point buffers (running statistics such as w_avg, pl_mean)."""
    if world_size() == 1:
        return
    for b in buffers:
        if b.is_floating_point():
            dist.all_reduce(b)
            b /= world_size()
