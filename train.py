"""Train an RTIL generator family with PyTorch Lightning.

    python train.py fit --config configs/stylegan2_digits.yaml [--trainer.devices 8 --trainer.num_nodes 2 ...]
    python train.py fit --config configs/stylegan2_digits.yaml --ckpt_path last      # exact resume
    python train.py fit --config configs/stylegan2_digits.yaml --init_from G.pt      # from a pretrained generator

The model is chosen by class path in the config (rtil.training.StyleGAN2Module or
rtil.training.PGGANModule). The data's resolution and channels are linked into the model.
Logging goes to CSV and to Weights & Biases in offline mode (`--wandb online` to sync, `--wandb
disabled` for none). Checkpoints: `checkpoint.*`; sample grids: `samples.*`; the generator file
is written at the end of fit (`export.*`).
"""

from rtil.training.cli import main

if __name__ == "__main__":
    main()
