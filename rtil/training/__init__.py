"""Lightning training of RTIL generator families (StyleGAN2 and PGGAN)."""

from rtil.training.base import GanModule
from rtil.training.pggan_module import PGGANModule
from rtil.training.stylegan2_module import StyleGAN2Module

__all__ = ["GanModule", "PGGANModule", "StyleGAN2Module"]
