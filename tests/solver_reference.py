"""Fixed-seed solver runs whose reconstructions are stored in tests/data/solver_reference.pt, so that a
refactoring of the solvers can be checked to change nothing (tests/test_solver_reference.py).

Regenerate the file only when a change of the solvers' results is intended, and say why in the commit:
    python tests/solver_reference.py
"""

import sys
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parent / "data"
REFERENCE = DATA / "solver_reference.pt"
TRAINED = DATA / "stylegan2_digits_5kimg.pt"
NUM_IMAGES = 2
PROXY = {"proxy_samples": 2000, "perceptual": 0.0}  # LPIPS weights may or may not be on a machine

# name: (generator, method, task, task parameter, settings)
CASES = {
    "csgm_wplus": ("stylegan2", "csgm", "cs", 0.25, {"steps": 6, "restarts": 2}),
    "csgm_z_noises": ("stylegan2", "csgm", "cs", 0.25,
                      {"latent_space": "z", "optimize_noises": True, "steps": 6, "restarts": 2}),
    "csgm_w_sna": ("stylegan2", "csgm", "inpaint", 0.5,
                   {"latent_space": "w", "steps": 6, "restarts": 1, "stochastic_noise": 0.05, "select": "last"}),
    "pulse": ("stylegan2", "pulse", "cs", 0.25,
              {"restarts": 2, "steps": 6, "geocross": 0.01, "noise_start": "random", **PROXY}),
    "ilo": ("stylegan2", "ilo", "cs", 0.25,
            {"steps": [4, 3, 3], "latent_l1_radius": [0.5, 0.5], "noise_l1_radius": [0.5, 0.5], **PROXY}),
    "ilo_range_denoise": ("stylegan2", "ilo", "denoise", 0.1,
                          {"steps": [4, 3, 3], "project_range": True, "range_steps": 3, "noise_start": "random",
                           "project_sphere": False, **PROXY}),
    "mganprior_w": ("stylegan2", "mganprior", "cs", 0.25, {"num_codes": 3, "cut_point": 2, "restarts": 2, "steps": 6}),
    "mganprior_z_dirichlet": ("stylegan2", "mganprior", "sr", 2,
                              {"num_codes": 2, "cut_point": 1, "code_space": "z", "alpha_init": "dirichlet",
                               "optimize_downstream_styles": False, "optimizer": "sgd", "lr": 0.5, "steps": 6,
                               "restarts": 1}),
    "csgm_pggan": ("pggan", "csgm", "cs", 0.25, {"steps": 6, "restarts": 2}),
    "pulse_pggan": ("pggan", "pulse", "cs", 0.25, {"restarts": 2, "steps": 6}),
    "ilo_pggan": ("pggan", "ilo", "cs", 0.25,
                  {"cut_points": [0, 1, 2], "steps": [4, 3, 3], "noise_layers": [0, 0, 0], "project_range": True,
                   "range_steps": 3, "perceptual": 0.0}),
    "mganprior_pggan": ("pggan", "mganprior", "inpaint", 0.3,
                        {"num_codes": 3, "cut_point": 2, "restarts": 2, "steps": 6, "alpha_init": "dirichlet"}),
}


def pggan_record() -> dict:
    """A small random 32-px grey PGGAN (its weights are stored in the reference file)."""
    from rtil.checkpoints import generator_record
    from rtil.models.pggan import Generator

    torch.manual_seed(0)
    G = Generator(z_dim=16, resolution=32, img_channels=1, channel_base=128, channel_max=16)
    with torch.no_grad():
        for p in G.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return generator_record(G.eval())


def run_case(name: str, generators: dict) -> torch.Tensor:
    """The case's reconstructions (NUM_IMAGES, C, H, W) from solve_images with seed 0."""
    from rtil.data.digits import digits_test_images
    from rtil.inverse.run import TASK_PARAMETER, solve_images

    family, method, task, param, settings = CASES[name]
    G = generators[family]
    images = digits_test_images(G.resolution, G.img_channels)[:NUM_IMAGES]
    result = solve_images(G, images, method, task, settings, seed=0, batch_size=NUM_IMAGES,
                          **{TASK_PARAMETER[task]: param})
    return result.reconstructions


def load_generators(pggan: dict) -> dict:
    from rtil.checkpoints import build_generator, load_generator

    return {"stylegan2": load_generator(TRAINED).requires_grad_(False),
            "pggan": build_generator(pggan).eval().requires_grad_(False)}


def main() -> None:
    torch.set_num_threads(1)
    pggan = pggan_record()
    generators = load_generators(pggan)
    cases = {name: run_case(name, generators) for name in CASES}
    torch.save({"pggan": pggan, "cases": cases}, REFERENCE)
    print(f"wrote {REFERENCE} ({len(cases)} cases)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
