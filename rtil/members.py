"""Sampling an RTIL family's members (G0..GK) with the same seed for every member: what training's sample grids
(callbacks.SampleGrid), the demo's and the study's member grids and the per-member Fréchet digits distance
(rtil.evaluation.digits_fd.member_fdds) draw. Beside rtil/latents.py, which defines the families."""

import torch


@torch.no_grad()
def member_images(G, family, member: int, num_samples: int, seed: int, noise_mode: str = "const",
                  device: torch.device | str | None = None) -> torch.Tensor:
    """Images (num_samples, C, H, W) of member `member` of `family` (None: the vanilla G, member 0), from a
    torch.Generator seeded `seed` on `device` (latents first, then the member's draws and noise maps)."""
    gen = torch.Generator(device=device or "cpu").manual_seed(seed)
    if family is None or member == 0:
        z = torch.randn(num_samples, G.z_dim, device=device, generator=gen)
        return G(z, generator=gen, noise_mode=noise_mode)
    if hasattr(family, "sample_z"):  # PGGAN members take several codes per image
        z = family.sample_z(G, member, num_samples, gen, device)
    else:
        z = torch.randn(num_samples, G.z_dim, device=device, generator=gen)
    return family.generate(G, z, member, generator=gen, noise_mode=noise_mode)


def num_members(family) -> int:
    """G0..GK: the family's members, or 1 for vanilla (family None)."""
    return family.num_members if family is not None else 1


def member_grid(G, family, num_samples: int, seed: int, noise_mode: str = "const",
                device: torch.device | str | None = None) -> torch.Tensor:
    """Images (members * num_samples, C, H, W): one row of `member_images` per member, the same seed for every
    row (a vanilla G, family None, gives one row)."""
    return torch.cat([member_images(G, family, member, num_samples, seed, noise_mode, device)
                      for member in range(num_members(family))])
