"""The solvers give the stored reconstructions of fixed-seed runs (tests/solver_reference.py): a change to the
solvers' code that is not meant to change results must pass this unchanged.

What is compared, and why it is stable: every case runs in float64 on inputs stored in the reference file (the
generators' weights and the truth images) with the solvers' own float64 random draws, and each reconstruction
must match the stored one to TOLERANCE (1e-6) per pixel. Kernel differences between CPUs (oneDNN's and torch's
vector code for AVX2, AVX-512 or none) change float64 results in the last bits, which a dozen optimisation steps
amplify to below 1e-9 here; a real change of a solver (a learning rate, a step, a projection) moves pixels by
1e-3 or more. The second test re-runs every case under other kernel settings to keep it that way."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from solver_reference import CASES, REFERENCE, TOLERANCE, load_generators, run_case

# (DNNL_MAX_CPU_ISA, ATEN_CPU_CAPABILITY): oneDNN's convolutions and torch's vectorised ops as on an older CPU
# and on an AVX2 one (a CPU without the requested instructions falls back to what it has).
OTHER_KERNELS = [("SSE41", "default"), ("AVX2", "avx2")]


@pytest.fixture(scope="module")
def reference():
    stored = torch.load(REFERENCE, weights_only=True)
    return stored, load_generators(stored["pggan"])


@pytest.mark.parametrize("name", list(CASES))
def test_solver_gives_the_stored_reconstructions(reference, name):
    stored, generators = reference
    got = run_case(name, generators, stored["images"])
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, stored["cases"][name], atol=TOLERANCE, rtol=0)


@pytest.mark.parametrize(("isa", "capability"), OTHER_KERNELS)
def test_the_reference_holds_with_other_cpu_kernels(isa, capability):
    script = Path(__file__).resolve().parent / "solver_reference.py"
    env = {**os.environ, "DNNL_MAX_CPU_ISA": isa, "ATEN_CPU_CAPABILITY": capability, "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, str(script), "--check"], env=env, capture_output=True, text=True,
                         timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
