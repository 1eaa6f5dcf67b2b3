"""rtil: GAN priors with regularized intermediate layers, for inverse problems."""

from rtil.checkpoints import load_generator, save_generator
from rtil.errors import RtilError

__version__ = "0.1.0"

__all__ = ["RtilError", "__version__", "load_generator", "save_generator"]
