"""Exponential moving average of generator weights (the G_ema used for sampling and export)."""

import torch


def ema_beta(batch_size: int, ema_kimg: float, nimg: int = 0, rampup: float | None = None) -> float:
    """Per-step decay for a half-life of `ema_kimg` thousand images at global batch `batch_size`.
    With `rampup`, the half-life is at most rampup * images seen so far (NV's ramp-up)."""
    ema_nimg = ema_kimg * 1000.0
    if rampup is not None:
        ema_nimg = min(ema_nimg, nimg * rampup)
    return 0.5 ** (batch_size / max(ema_nimg, 1e-8))


@torch.no_grad()
def update_ema(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    """ema <- beta * ema + (1 - beta) * model for parameters; buffers (w_avg, const noise, lod)
    are copied."""
    for p_ema, p in zip(ema.parameters(), model.parameters(), strict=True):
        p_ema.lerp_(p.detach(), 1.0 - beta)
    for b_ema, b in zip(ema.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)
