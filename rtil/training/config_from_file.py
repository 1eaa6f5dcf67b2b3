"""A train.py config for continuing a pretrained generator file: its architecture from the file (any format
`train.py --init_from` reads), its RTIL family (the file's own record, else the defaults below), the training
settings the file recorded (our own exported files record them), and a data section for an image folder.

    config, notes = training_config_from_file("ffhq.pkl", "/data/ffhq")   # notes: where each part came from

The RTIL family when the file records none: StyleGAN2, Gaussian latents at cut points 1..4 (the RTIL paper's) that
lie before the last block (the configs' [1, 2] at 16x16, [1, 2, 3] at 32x32, [1, 2, 3, 4] from 64x64 on); PGGAN,
Dirichlet fusion of 10 and 20 codes (the paper's) at cut 4, or before the last block for a smaller generator.
"""

import inspect
import math
from pathlib import Path

from rtil.errors import RtilError
from rtil.training.init_from import read_init_source

MODULES = {"stylegan2": "StyleGAN2Module", "pggan": "PGGANModule"}
PAPER_CUT_POINTS = [1, 2, 3, 4]  # StyleGAN2 + ILO: latents after the 4x4 .. 32x32 blocks
PAPER_CODES = [10, 20]  # PGGAN + mGANprior: G1 fuses 10 codes, G2 20
PAPER_FUSION_CUT = 4
# recorded hyper-parameters that are not training settings to carry over: the architecture (from the file's
# record), the RTIL family and how members are trained (the study sets them per arm), the length and seed
NOT_CARRIED = {"resolution", "img_channels", "z_dim", "w_dim", "mapping_layers", "mapping_lr_mul", "channel_base",
               "channel_max", "channel_table", "conv_clamp", "upsample_mode", "normalize_latent", "pixel_norm_first",
               "first_block_convs", "latent_gain", "torgb_gain", "rtil", "member_weighting", "member_lambda",
               "member_sampling", "total_kimg", "seed", "progressive"}


def default_family(family: str, resolution: int) -> dict:
    """The RTIL family for a generator file that records none (see the module docstring)."""
    last_block = int(math.log2(resolution)) - 1  # the cut point at the generator's output
    if family == "stylegan2":
        cuts = [c for c in PAPER_CUT_POINTS if c < last_block]
        if not cuts:
            raise RtilError(f"a {resolution}x{resolution} StyleGAN2 has no cut point before its last block for RTIL's "
                            f"latents; give model.init_args.rtil yourself")
        return {"kind": "gaussian", "cut_points": cuts, "sigma": 1.0}
    cut = min(PAPER_FUSION_CUT, last_block - 1)
    if cut < 1:
        raise RtilError(f"a {resolution}x{resolution} PGGAN has no cut point for RTIL's fusion; give "
                        f"model.init_args.rtil yourself")
    return {"kind": "dirichlet", "codes_per_member": list(PAPER_CODES), "cut_point": cut}


def _module_class(family: str):
    from rtil.training import PGGANModule, StyleGAN2Module

    return {"stylegan2": StyleGAN2Module, "pggan": PGGANModule}[family]


def training_config_from_file(path: str | Path, data_path: str | Path, total_kimg: float = 20.0
                              ) -> tuple[dict, list[str]]:
    """(the train.py config, lines saying where its parts came from) to continue the generator in `path` on the
    images of the folder `data_path` (resized to the generator's size by the training data module)."""
    src = read_init_source(path)
    if src.family not in MODULES:
        raise RtilError(f"{path}: a {src.family} generator; rtil trains only {' and '.join(MODULES)}")
    arch = dict(src.arch)
    module = _module_class(src.family)
    accepted = set(inspect.signature(module.__init__).parameters) - {"self"}
    init_args = {k: v for k, v in arch.items() if k in accepted and k not in ("resolution", "img_channels")}
    if arch.get("channels"):
        init_args["channel_table"] = {int(r): int(c) for r, c in dict(arch["channels"]).items()}
    init_args.pop("channels", None)
    notes = [f"architecture: {Path(path).name} ({src.format}; {src.family}, {arch['resolution']}x{arch['resolution']}, "
             f"{arch['img_channels']} channel(s))"]

    provenance = _recorded_training(path) if src.format == "rtil generator file" else {}
    carried = {k: v for k, v in (provenance.get("hyper_parameters") or {}).items()
               if k in accepted and k not in NOT_CARRIED and not k.startswith("rtil_")}
    init_args.update(carried)
    notes.append("training settings: " + (f"those the file recorded ({', '.join(sorted(carried))}), the rest "
                                         f"{module.__name__}'s defaults" if carried
                                         else f"{module.__name__}'s defaults (the file records none)"))

    kind = "gaussian" if src.family == "stylegan2" else "dirichlet"
    if isinstance(src.rtil, dict) and src.rtil.get("kind") == kind and (src.rtil.get("cut_points")
                                                                       or src.rtil.get("codes_per_member")):
        family, where = dict(src.rtil), "the file's own RTIL family record"
    else:
        family = default_family(src.family, arch["resolution"])
        where = "the file records none: the default for its size"
    init_args.update(rtil=family, member_weighting="equal", member_sampling="all", total_kimg=total_kimg)
    if src.family == "pggan":
        init_args["progressive"] = False  # continue at full resolution (growing would restart at 4x4)
    notes.append(f"RTIL family: {family} ({where}); every member every step with equal weights (the RTIL "
                 f"authors' protocol)")

    data_record = provenance.get("data") or {}
    resolution = int(arch["resolution"])
    batch = int(data_record.get("batch_size_per_device") or (16 if resolution <= 128 else 8))
    config = {"seed_everything": 0,
              "trainer": {"accelerator": "auto", "devices": 1, "default_root_dir": "outputs/train"},
              "model": {"class_path": f"rtil.training.{module.__name__}", "init_args": init_args},
              "data": {"dataset": "folder", "path": str(data_path), "resolution": resolution,
                       "channels": int(arch["img_channels"]), "batch_size": batch,
                       "num_workers": 0 if resolution <= 64 else 4, "flip": False},
              "checkpoint": {"every_kimg": total_kimg / 2, "save_top_k": -1},
              "samples": {"every_kimg": total_kimg}}
    notes.append("discriminator: the file's" if src.d is not None else
                 f"discriminator: none in the file ({src.d_note}): training starts it from scratch, so the first "
                 f"steps of a continuation train the generator against an untrained discriminator")
    notes.append(f"data: the folder {data_path}, batch {batch} per device"
                 + (" (the file's recorded batch)" if data_record.get("batch_size_per_device") else ""))
    return config, notes


def _recorded_training(path: str | Path) -> dict:
    """The provenance of one of our generator files ({} when it records no training run)."""
    from rtil.checkpoints import read_generator_file

    provenance = read_generator_file(path).get("provenance") or {}
    return provenance if provenance.get("source") == "rtil training" else {}
