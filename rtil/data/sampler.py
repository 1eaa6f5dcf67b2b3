"""An endless, seeded sample order that can start at any position: exact resume and DDP splits.

The global stream is an endless sequence of passes over the dataset, pass r in the order of a
permutation seeded by (seed, r). Rank k of W takes the stream positions k, k + W, k + 2W, ...
Starting at local position s reproduces exactly what an uninterrupted run would have read next,
so a run resumed from a checkpoint at iteration t (s = t * batch) sees the same batches.
"""

import itertools

import torch
from torch.utils.data import Sampler


class InfiniteSampler(Sampler[int]):
    """Endless indices into a dataset of `num_items` items for rank `rank` of `world_size`."""

    def __init__(self, num_items: int, seed: int = 0, shuffle: bool = True, rank: int = 0, world_size: int = 1,
                 start: int = 0):
        if num_items < 1:
            raise ValueError("InfiniteSampler needs a non-empty dataset")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}")
        self.num_items, self.seed, self.shuffle = num_items, seed, shuffle
        self.rank, self.world_size, self.start = rank, world_size, start

    def order(self, pass_index: int) -> torch.Tensor:
        if not self.shuffle:
            return torch.arange(self.num_items)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + pass_index)
        return torch.randperm(self.num_items, generator=gen)

    def __iter__(self):
        n = self.num_items
        current_pass, order = None, None
        for local in itertools.count(self.start):
            g = local * self.world_size + self.rank
            if g // n != current_pass:
                current_pass = g // n
                order = self.order(current_pass)
            yield int(order[g % n])
