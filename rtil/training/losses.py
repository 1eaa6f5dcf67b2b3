"""GAN losses and regularisers. Logits are (B, 1); images (B, C, H, W)."""

import math

import torch
import torch.nn.functional as F


def g_nonsaturating(fake_logits: torch.Tensor) -> torch.Tensor:
    """Generator loss softplus(-D(G(z))) = -log sigmoid(D(G(z))), mean over the batch."""
    return F.softplus(-fake_logits).mean()


def d_logistic_real(real_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss on reals softplus(-D(x)), mean over the batch."""
    return F.softplus(-real_logits).mean()


def d_logistic_fake(fake_logits: torch.Tensor) -> torch.Tensor:
    """Discriminator loss on fakes softplus(D(G(z))), mean over the batch."""
    return F.softplus(fake_logits).mean()


def r1_penalty(real_logits: torch.Tensor, reals: torch.Tensor) -> torch.Tensor:
    """Per-sample squared gradient norm ||dD(x)/dx||^2 (B,); `reals` must require grad."""
    (grad,) = torch.autograd.grad(real_logits.sum(), reals, create_graph=True)
    return grad.square().sum(dim=(1, 2, 3))


def path_lengths(images: torch.Tensor, ws: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """StyleGAN2 path lengths (B,): || J_w^T y ||, y ~ N(0, I) / sqrt(H W), averaged over the
    num_ws style vectors (sqrt of the mean over layers of the squared norm)."""
    h, w = images.shape[2:]
    noise = torch.randn(images.shape, device=images.device, generator=generator) / math.sqrt(h * w)
    (grad,) = torch.autograd.grad((images * noise).sum(), ws, create_graph=True)
    return grad.square().sum(dim=2).mean(dim=1).sqrt()


def wgan_gp_d(real_logits: torch.Tensor, fake_logits: torch.Tensor, drift: float = 0.001) -> torch.Tensor:
    """WGAN discriminator loss D(fake) - D(real) + drift * D(real)^2, mean over the batch."""
    return (fake_logits - real_logits + drift * real_logits.square()).mean()


def gradient_penalty(D, reals: torch.Tensor, fakes: torch.Tensor, generator: torch.Generator | None = None,
                     target: float = 1.0) -> torch.Tensor:
    """Per-sample (||dD(x_hat)/dx_hat|| - target)^2 (B,) at x_hat = lerp(real, fake, u), u ~ U(0, 1)."""
    u = torch.rand(reals.shape[0], 1, 1, 1, device=reals.device, generator=generator)
    mixed = (reals.detach() + u * (fakes.detach() - reals.detach())).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(mixed).sum(), mixed, create_graph=True)
    return (grad.flatten(1).norm(dim=1) - target).square()
