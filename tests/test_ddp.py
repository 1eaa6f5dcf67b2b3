"""Two-process DDP on CPU (gloo): both ranks stay in sync and read different data."""

import subprocess
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).parent / "scripts" / "ddp_train.py"


def test_two_process_ddp_keeps_ranks_in_sync(tmp_path):
    result = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path)], capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # Global batch = 2 ranks x 4 images, 3 iterations.
    assert r0["nimg"] == r1["nimg"] == 3 * 2 * 4
    for key, value in r0["state"].items():
        if key.startswith(("G.", "D.", "G_ema.")) and not key.endswith(("w_avg", "noise_const")):
            torch.testing.assert_close(value, r1["state"][key], rtol=0, atol=0, msg=key)
    # The ranks trained on different images (disjoint slices of the same seeded order).
    assert not torch.equal(r0["batches"][0], r1["batches"][0])
    # The running statistics each rank updates from its own batch are averaged across ranks: every rank (and so
    # rank 0's checkpoints and exported generator) holds the same w_avg and path-length means, and they moved.
    for key in ("G.mapping.w_avg", "G_ema.mapping.w_avg", "pl_mean"):
        torch.testing.assert_close(r0["state"][key], r1["state"][key], rtol=0, atol=0, msg=key)
        assert r0["state"][key].abs().sum() > 0, key
