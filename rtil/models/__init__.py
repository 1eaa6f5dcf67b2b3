"""Generator and discriminator architectures. `GENERATORS` maps a family name to its class."""

from rtil.models import pggan, stylegan2
from rtil.models.state import SynthesisState

GENERATORS = {"stylegan2": stylegan2.Generator}
DISCRIMINATORS = {"stylegan2": stylegan2.Discriminator}
GENERATORS["pggan"], DISCRIMINATORS["pggan"] = pggan.Generator, pggan.Discriminator

__all__ = ["DISCRIMINATORS", "GENERATORS", "SynthesisState", "stylegan2"]
