"""Lightning training of RTIL generator families (StyleGAN2 and PGGAN)."""

from rtil.training.base import GanModule
from rtil.training.stylegan2_module import StyleGAN2Module

__all__ = ["GanModule", "StyleGAN2Module"]
