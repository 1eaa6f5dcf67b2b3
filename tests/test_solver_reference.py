"""The solvers give the stored reconstructions of fixed-seed runs (tests/solver_reference.py): a change
to the solvers' code that is not meant to change results must pass this unchanged."""

import pytest
import torch
from solver_reference import CASES, REFERENCE, load_generators, run_case


@pytest.fixture(scope="module")
def reference():
    stored = torch.load(REFERENCE, weights_only=True)
    return stored, load_generators(stored["pggan"])


@pytest.mark.parametrize("name", list(CASES))
def test_solver_gives_the_stored_reconstructions(reference, name):
    stored, generators = reference
    got = run_case(name, generators)
    torch.testing.assert_close(got, stored["cases"][name], atol=1e-5, rtol=0)
