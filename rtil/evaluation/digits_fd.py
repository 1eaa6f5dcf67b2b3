"""Sample quality on the built-in digits: a Fréchet distance in the feature space of a small
classifier trained on the digits' training split (Inception weights, and so FID, are not
available offline). It is a proxy for comparing runs on digits, not an FID.

Images are area-averaged to 8x8 (the digits' native size), mapped to the 0..16 range of
scikit-learn's digits, and embedded with the hidden layer of a seeded MLP classifier.
"""

from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F


@lru_cache(maxsize=1)
def _classifier():
    from sklearn.datasets import load_digits
    from sklearn.neural_network import MLPClassifier

    digits = load_digits()
    clf = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=0)
    clf.fit(digits.data[:1500] / 16.0, digits.target[:1500])
    return clf


def digit_features(images: torch.Tensor) -> np.ndarray:
    """Images (N, C, H, W) in [-1, 1] -> features (N, 64) (hidden ReLU layer of the classifier)."""
    x = images.detach().float().cpu().mean(dim=1, keepdim=True)  # gray
    x = F.adaptive_avg_pool2d(x, 8).reshape(len(x), 64)
    x = ((x.clamp(-1, 1) + 1) / 2).numpy()  # digits data / 16 is in [0, 1]
    clf = _classifier()
    return np.maximum(x @ clf.coefs_[0] + clf.intercepts_[0], 0.0)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to feature sets a (N, D) and b (M, D).

    tr sqrt(cov_a cov_b) is computed as the sum of the square roots of the eigenvalues of the symmetric
    S cov_b S, S = cov_a^(1/2): exact for singular covariances too (the classifier has units that never fire
    on digits), where a general matrix square root of cov_a cov_b warns and may lose accuracy."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    values, vectors = np.linalg.eigh(cov_a)
    root_a = (vectors * np.sqrt(values.clip(min=0.0))) @ vectors.T
    product = root_a @ cov_b @ root_a
    trace_sqrt = np.sqrt(np.linalg.eigvalsh((product + product.T) / 2).clip(min=0.0)).sum()
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)


def digits_fd(generated: torch.Tensor, reference: torch.Tensor) -> float:
    """Fréchet digits distance between generated and reference images, both (N, C, H, W) in [-1, 1]."""
    return frechet_distance(digit_features(generated), digit_features(reference))


def classifier_confidence(images: torch.Tensor) -> float:
    """Mean max-class probability of the digits classifier on the images (in [0.1, 1])."""
    x = images.detach().float().cpu().mean(dim=1, keepdim=True)
    x = ((F.adaptive_avg_pool2d(x, 8).reshape(len(x), 64).clamp(-1, 1) + 1) / 2).numpy()
    return float(_classifier().predict_proba(x).max(axis=1).mean())


@torch.no_grad()
def member_fdds(G, num_samples: int = 1000, seed: int = 123) -> list[float]:
    """FDD against the test digits of `num_samples` samples (random noise maps) of every RTIL member of the
    generator G (G0 = the plain generator; one value for a vanilla generator)."""
    from rtil.config import build_family
    from rtil.data.digits import digits_images
    from rtil.members import member_images, num_members

    family = build_family(G.rtil) if G.rtil else None
    test = digits_images("test", G.resolution, G.img_channels)
    return [digits_fd(member_images(G, family, member, num_samples, seed, noise_mode="random"), test)
            for member in range(num_members(family))]
