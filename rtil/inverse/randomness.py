"""Per-image randomness: every image gets its own generator, seeded by (stream, seed, image index), so it
gets the same operator draw, start and noise whatever the batch it is solved in. Rows of a batch with
restarts are restart-major: row r * B + b is restart r of image b.

Normal draws are made in float64 and then cast (`randn`): torch's float32 normal sampler has CPU-specific vector
kernels (AVX2 and AVX-512 round differently in the last bit), its float64 sampler does not, so a seed gives the
same draws on every CPU and in float32 and float64 runs."""

from collections.abc import Sequence

import numpy as np
import torch

from rtil.errors import RtilError

SOLVER_STREAM = 0x501E  # keeps solver draws independent of operator draws made with the same seed


def image_generators(batch_size: int, seed: int, item_offset: int = 0, stream: int = SOLVER_STREAM
                     ) -> list[torch.Generator]:
    """One CPU generator per image; image i's generator depends only on (stream, seed, item_offset + i).
    Different streams give independent draws for the same seed (solver starts vs. measurement noise)."""
    if int(seed) < 0 or int(item_offset) < 0:
        raise RtilError(f"seed and item_offset must be >= 0, got {seed} and {item_offset}")
    gens = []
    for index in range(item_offset, item_offset + batch_size):
        words = np.random.SeedSequence([stream, int(seed), index]).generate_state(2, dtype=np.uint32)
        gens.append(torch.Generator().manual_seed(int(words[0]) << 32 | int(words[1])))
    return gens


def randn(shape: Sequence[int], generator: torch.Generator | None = None, dtype: torch.dtype | None = None,
          device: torch.device | str | None = None) -> torch.Tensor:
    """N(0, 1) draws of `shape`, sampled in float64 on the generator's device, returned as `dtype` (default: torch's
    default dtype) on `device` (default: the generator's)."""
    draw_device = generator.device if generator is not None else device
    draws = torch.randn(tuple(shape), generator=generator, device=draw_device, dtype=torch.float64)
    return draws.to(device=device if device is not None else draw_device, dtype=dtype or torch.get_default_dtype())


def randn_rows(gens: Sequence[torch.Generator], shape: Sequence[int], restarts: int = 1,
               device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> torch.Tensor:
    """N(0, 1) draws (restarts * B, *shape), row r * B + b from image b's generator (restarts in order)."""
    per_image = [randn((restarts, *shape), g, dtype) for g in gens]
    return torch.stack(per_image, dim=1).reshape(restarts * len(gens), *shape).to(device)
