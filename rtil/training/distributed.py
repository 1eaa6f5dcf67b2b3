"""Gradient synchronisation for GAN training under Lightning DDP.

Lightning wraps the whole LightningModule (G and D together) in one DistributedDataParallel, and
each manual_backward of a GAN phase uses only part of it, several times per step. Instead of
fighting DDP's reducer (unused parameters, one backward per forward), rtil turns DDP's own
gradient sync off and averages the gradients of the phase's parameters explicitly before each
optimizer step (one flattened all-reduce per phase). The running statistics each process updates
from its own batch (StyleGAN2's w_avg and path-length means) are averaged the same way
(`average_buffers`), so that every rank, and rank 0's checkpoints and exports, hold the same values.
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
    if world_size() == 1:
        return
    params = [p for p in params if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    _average_in_place([p.grad for p in params])


@torch.no_grad()
def average_buffers(buffers) -> None:
    """All-reduce (mean) floating-point buffers in place across processes.

    For running statistics that each process updates from its own batch: StyleGAN2's `w_avg` and the
    path-length means `pl_mean` would otherwise drift apart across ranks (DDP broadcasts buffers only
    when it syncs gradients itself, which rtil turns off), and rank 0's checkpoints and exported
    generator would reflect rank 0's images only. Their updates are lerps, linear in the batch
    statistic, so averaging the updated values (equal before the update) gives exactly the update
    with the mean over all ranks' batches."""
    if world_size() > 1:
        _average_in_place([b for b in buffers if b.is_floating_point()])


def _average_in_place(tensors: list[torch.Tensor]) -> None:
    """One flattened all-reduce (mean) of `tensors`, written back in place."""
    if not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= world_size()
    offset = 0
    for t in tensors:
        t.copy_(flat[offset:offset + t.numel()].view_as(t))
        offset += t.numel()
