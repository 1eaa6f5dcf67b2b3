"""deepinv interoperability: a deepinv LinearPhysics as an rtil forward operator, so every rtil solver (and
e-GLASS) accepts the forward models of deepinv (https://deepinv.github.io), e.g.

    physics = deepinv.physics.Inpainting(img_size=(3, 256, 256), mask=0.3)
    operator = DeepinvPhysics(physics, image_shape=(3, 256, 256), batch_size=8)
    result = ILO().solve(G, operator, y)

A = physics.A and A^T = physics.A_adjoint (deepinv's own operators, unchanged); the measurement noise std is
that of a Gaussian noise model (deepinv.physics.GaussianNoise), else 0 (or give `noise_std`). rtil images are
in [-1, 1]: linear physics apply unchanged, but physics with an offset or a non-Gaussian noise model do not
fit rtil's y = A x + noise and are refused. deepinv is optional (pip install deepinv).
"""

import torch

from rtil.errors import RtilError
from rtil.inverse.operators import ForwardOperator


class DeepinvPhysics(ForwardOperator):
    """A deepinv LinearPhysics for a batch of `batch_size` images of shape image_shape (C, H, W)."""

    def __init__(self, physics, image_shape, batch_size: int, noise_std: float | None = None):
        try:
            import deepinv
        except ImportError:
            raise RtilError("DeepinvPhysics needs deepinv (pip install deepinv)") from None
        if not isinstance(physics, deepinv.physics.LinearPhysics):
            raise RtilError(f"rtil solvers need a linear forward model: {type(physics).__name__} is not a deepinv "
                            f"LinearPhysics")
        noise = physics.noise_model
        if noise_std is None:
            if isinstance(noise, deepinv.physics.GaussianNoise):
                noise_std = float(torch.as_tensor(noise.sigma).max())
            elif isinstance(noise, deepinv.physics.ZeroNoise):
                noise_std = 0.0
            else:
                raise RtilError(f"the noise model {type(noise).__name__} is not Gaussian: give noise_std for rtil's "
                                f"y = A x + noise_std * e, or use deepinv.physics.GaussianNoise")
        super().__init__(image_shape, batch_size, noise_std)
        self.physics = physics
        with torch.no_grad():
            probe = physics.A(torch.zeros(1, *self.image_shape))
        self._measurement_shape = tuple(probe.shape[1:])

    @property
    def measurement_shape(self) -> tuple[int, ...]:
        return self._measurement_shape

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_images(x)
        return self.physics.A(x)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        self._check_measurements(y)
        return self.physics.A_adjoint(y)

    def _settings(self) -> dict:
        return {"deepinv_physics": type(self.physics).__name__}
