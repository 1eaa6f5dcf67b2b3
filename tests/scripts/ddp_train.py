"""Two-process CPU (gloo) DDP training run used by tests/test_ddp.py.

    python tests/scripts/ddp_train.py OUT_DIR

Lightning's DDP launcher re-runs this script for rank 1. Each rank saves its parameters and
counters to OUT_DIR/rank<r>.pt at the end, so the test can check that the ranks stayed in sync.
"""

import sys
import warnings
from pathlib import Path

import pytorch_lightning as pl
import torch

from rtil.data.datamodule import GanDataModule
from rtil.training import StyleGAN2Module


class SaveRankState(pl.Callback):
    def __init__(self, out: Path):
        self.out = out
        self.first_batches = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if len(self.first_batches) < 2:
            self.first_batches.append(batch.detach().clone())

    def on_train_end(self, trainer, module):
        state = {k: v.detach().clone() for k, v in module.state_dict().items()}
        torch.save({"state": state, "nimg": int(module.nimg), "batches": self.first_batches},
                   self.out / f"rank{trainer.global_rank}.pt")


def main(out: Path):
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    module = StyleGAN2Module(resolution=8, img_channels=1, z_dim=8, w_dim=8, mapping_layers=1, channel_base=64,
                             channel_max=8, mbstd_group_size=2, r1_interval=2, pl_interval=2,
                             rtil={"kind": "gaussian", "cut_points": [1, 2]}, total_kimg=3 * 2 * 4 / 1000)
    data = GanDataModule(resolution=8, channels=1, batch_size=4, seed=0)
    trainer = pl.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, max_epochs=-1,
                         use_distributed_sampler=False, default_root_dir=out, callbacks=[SaveRankState(out)])
    trainer.fit(module, data)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
