"""Fixed-seed solver runs whose reconstructions are stored in tests/data/solver_reference.pt, so that a
refactoring of the solvers can be checked to change nothing (tests/test_solver_reference.py).

The runs are in float64 (generators, images, latents, operators) on inputs stored in the file (the generators'
weights and the truth images), so they do not depend on which CPU kernels torch picks: float32 runs of a few
hundred optimisation steps amplify the last-bit differences between AVX2 and AVX-512 kernels into visibly
different images; in float64 the same differences stay below 1e-9 (measured with DNNL_MAX_CPU_ISA and
ATEN_CPU_CAPABILITY, see the test). Random draws are made in float64 by the solvers themselves
(rtil.inverse.randomness), so they are the same on every CPU.

Regenerate the file only when a change of the solvers' results is intended, and say why in the commit:
    python tests/solver_reference.py
Check this machine's kernels against it (what the test runs under other kernel settings):
    python tests/solver_reference.py --check
"""

import sys
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parent / "data"
REFERENCE = DATA / "solver_reference.pt"
TRAINED = DATA / "stylegan2_digits_5kimg.pt"
NUM_IMAGES = 2
DTYPE = torch.float64
TOLERANCE = 1e-6  # max |difference| per pixel (images in [-1, 1]); kernel differences give < 1e-9 in float64
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
    "mganprior_w": ("stylegan2", "mganprior", "cs", 0.25,
                    {"num_codes": 3, "cut_point": 2, "restarts": 2, "steps": 6, "lr": 0.1}),
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
                        {"num_codes": 3, "cut_point": 2, "restarts": 2, "steps": 6, "alpha_init": "dirichlet",
                         "lr": 0.1}),
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


def truth_images(generators: dict) -> dict:
    """The first NUM_IMAGES test digits per family, (NUM_IMAGES, C, H, W) in [-1, 1], in DTYPE."""
    from rtil.data.digits import digits_test_images

    return {family: digits_test_images(G.resolution, G.img_channels)[:NUM_IMAGES].to(DTYPE)
            for family, G in generators.items()}


def run_case(name: str, generators: dict, images: dict) -> torch.Tensor:
    """The case's reconstructions (NUM_IMAGES, C, H, W) in DTYPE from solve_images with seed 0."""
    from rtil.inverse.run import TASK_PARAMETER, solve_images

    family, method, task, param, settings = CASES[name]
    result = solve_images(generators[family], images[family], method, task, settings, seed=0,
                          batch_size=NUM_IMAGES, **{TASK_PARAMETER[task]: param})
    return result.reconstructions


def load_generators(pggan: dict) -> dict:
    """Both test generators in DTYPE, without gradients."""
    from rtil.checkpoints import build_generator, load_generator

    return {"stylegan2": load_generator(TRAINED).to(DTYPE).requires_grad_(False),
            "pggan": build_generator(pggan).eval().to(DTYPE).requires_grad_(False)}


def differences(stored: dict) -> dict:
    """Max |got - stored| per case, the cases run on this machine with the stored inputs."""
    generators = load_generators(stored["pggan"])
    return {name: (run_case(name, generators, stored["images"]) - stored["cases"][name]).abs().max().item()
            for name in CASES}


def main(argv: list[str]) -> int:
    torch.set_num_threads(1)
    if argv == ["--check"]:
        found = differences(torch.load(REFERENCE, weights_only=True))
        for name, diff in found.items():
            print(f"{name}: max |difference| {diff:.1e}")
        return 0 if max(found.values()) <= TOLERANCE else 1
    pggan = pggan_record()
    generators = load_generators(pggan)
    images = truth_images(generators)
    cases = {name: run_case(name, generators, images) for name in CASES}
    torch.save({"pggan": pggan, "images": images, "cases": cases}, REFERENCE)
    print(f"wrote {REFERENCE} ({len(cases)} cases)")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main(sys.argv[1:]))
