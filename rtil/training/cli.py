"""The training command line (LightningCLI); `train.py` at the repository root calls `main`."""

import sys
import warnings
from pathlib import Path

from pytorch_lightning.cli import LightningCLI

from rtil.data.datamodule import GanDataModule
from rtil.errors import RtilError
from rtil.training.base import GanModule
from rtil.training.callbacks import ExportGenerator, KimgCheckpoint, SampleGrid, Throughput

WANDB_MODES = ("offline", "online", "disabled")


class RtilCLI(LightningCLI):
    def add_arguments_to_parser(self, parser):
        parser.link_arguments("data.resolution", "model.init_args.resolution")
        parser.link_arguments("data.channels", "model.init_args.img_channels")
        parser.add_lightning_class_args(KimgCheckpoint, "checkpoint")
        parser.add_lightning_class_args(SampleGrid, "samples")
        parser.add_lightning_class_args(Throughput, "throughput")
        parser.add_lightning_class_args(ExportGenerator, "export")
        parser.add_argument("--wandb", default="offline", choices=WANDB_MODES,
                            help="Weights & Biases logging: offline (default, no account or network), online, "
                                 "disabled")
        parser.add_argument("--run_name", default="rtil", help="name of the run's log folder")

    def before_instantiate_classes(self):
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        root = cfg.trainer.default_root_dir or "outputs/train"
        if cfg.checkpoint.dirpath is None:
            # One folder per run name (not per log version), so that `--ckpt_path last` finds last.ckpt.
            cfg.checkpoint.dirpath = str(Path(root) / cfg.run_name / "checkpoints")
        if cfg.trainer.logger in (None, True):
            loggers = [{"class_path": "pytorch_lightning.loggers.CSVLogger",
                        "init_args": {"save_dir": root, "name": cfg.run_name}}]
            if cfg.wandb != "disabled":
                loggers.append({"class_path": "pytorch_lightning.loggers.WandbLogger",
                                "init_args": {"save_dir": root, "name": cfg.run_name, "project": "rtil",
                                              "offline": cfg.wandb == "offline"}})
            cfg.trainer.logger = loggers


def main(args=None) -> RtilCLI:
    """Run the training CLI (`args` as on the command line; None reads sys.argv). Returns the CLI
    object (its `.trainer` and `.model`) for programmatic use; user errors exit with status 2."""
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # the EMA generator is eval
    try:
        return RtilCLI(GanModule, GanDataModule, subclass_mode_model=True, args=args,
                       save_config_kwargs={"overwrite": True},
                       trainer_defaults={"max_epochs": -1, "use_distributed_sampler": False, "log_every_n_steps": 10,
                                         "default_root_dir": "outputs/train"})
    except RtilError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":  # python -m rtil.training.cli fit ... (what train.py runs; the study's workers use it)
    main()
