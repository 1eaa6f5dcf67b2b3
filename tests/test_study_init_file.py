"""A study generator that starts from a pretrained generator file (`init_from: {file}`), and the train.py config
derived from a generator file (rtil/training/config_from_file.py)."""

import argparse
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch
import yaml

import rtil
from rtil.errors import RtilError
from rtil.study.config_reading import read_study_config
from rtil.study.runner import run_study
from rtil.study.stages import stage_items, train_arguments
from rtil.training import PGGANModule, StyleGAN2Module
from rtil.training.config_from_file import training_config_from_file
from rtil.training.init_from import check_generator_fits, read_init_source

DATA = Path(__file__).resolve().parent / "data"
NVLABS = DATA / "nvlabs" / "tiny-16px-gd.pkl"  # StyleGAN2, 16 px, 1 channel, with a discriminator
# the architecture of that pickle, as a study training config on the digits
TRAINING = """
seed_everything: 0
model:
  class_path: rtil.training.StyleGAN2Module
  init_args: {z_dim: 8, w_dim: 16, mapping_layers: 2, channel_base: 256, channel_max: 16, mbstd_group_size: 2,
              rtil: {kind: gaussian, cut_points: [1], sigma: 1.0}, total_kimg: 1}
data: {dataset: digits, resolution: 16, channels: 1, batch_size: 4, holdout: 100}
"""


def file_config(tmp_path: Path, baseline_file=NVLABS, treatment_file=NVLABS, **changes) -> Path:
    """A tiny study whose vanilla and RTIL arms both continue a generator file for 0.008 kimg."""
    train = tmp_path / "train.yaml"
    train.write_text(TRAINING)
    cfg = {"out": str(tmp_path / "out"), "report": str(tmp_path / "report" / "results.md"), "holdout": 100,
           "train_kimg": 0.008, "fdd_samples": 0,
           "generators": {"vanilla": {"config": str(train), "seed": 1, "init_from": {"file": str(baseline_file)},
                                      "set": {"model.init_args.rtil": None}},
                          "rtil": {"config": str(train), "seed": 1, "init_from": {"file": str(treatment_file)}}},
           "comparisons": {"same_start": {"labels": ["vanilla", "RTIL"], "baseline": ["vanilla"],
                                          "treatment": ["rtil"], "methods": ["csgm"]}},
           "methods": {"csgm": {"steps": 4, "restarts": 1}},
           "tune": {"images": {"split": "validation", "first": 0, "count": 2}, "task": "cs", "param": 0.25},
           "evaluate": {"images": {"split": "test", "first": 0, "count": 2}, "settings": ["common"],
                        "tasks": {"cs": [0.25]}}}
    cfg.update(changes)
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


def test_init_from_a_file_is_read_with_its_hash_in_the_fingerprint(tmp_path):
    own = tmp_path / "g.pkl"
    shutil.copyfile(NVLABS, own)
    cfg = read_study_config(file_config(tmp_path, own, own))
    start = cfg.generators["rtil"].init_from
    assert start == {"file": str(own.resolve()), "sha256": rtil.importers.common.sha256(own)}
    assert cfg.generators["vanilla"].init_from == start  # a same-start pair
    assert cfg.trained_generators() == ["vanilla", "rtil"]  # nothing to train before them
    assert stage_items(cfg, "train") == ["rtil", "vanilla"]
    assert train_arguments(cfg, "rtil")[-2:] == ["--init_from", str(own.resolve())]
    # the file's content, not its path, is in the fingerprint
    moved = tmp_path / "moved.pkl"
    shutil.copyfile(own, moved)
    assert read_study_config(file_config(tmp_path, moved, moved)).generators["rtil"].fingerprint == \
        cfg.generators["rtil"].fingerprint
    other = read_study_config(file_config(tmp_path, DATA / "nvlabs" / "tiny-16px.pkl", DATA / "nvlabs" /
                                          "tiny-16px.pkl"))
    assert other.generators["rtil"].fingerprint != cfg.generators["rtil"].fingerprint


def test_a_file_changed_after_the_config_was_read_is_refused_before_training(tmp_path):
    own = tmp_path / "g.pkl"
    shutil.copyfile(NVLABS, own)
    cfg = read_study_config(file_config(tmp_path, own, own))
    shutil.copyfile(DATA / "nvlabs" / "tiny-16px.pkl", own)
    with pytest.raises(RtilError, match="changed since the study config was read"):
        train_arguments(cfg, "rtil")


def test_both_arms_train_from_the_file_and_a_changed_file_is_refused_like_a_changed_setting(tmp_path):
    own = tmp_path / "g.pkl"
    shutil.copyfile(NVLABS, own)
    config = file_config(tmp_path, own, own)
    assert run_study(config, stages=["train"])["ran"]["train"] == 2
    for name in ("vanilla", "rtil"):
        done = json.loads((tmp_path / "out" / "train" / name / "done.json").read_text())
        assert done["init_from"] == str(own.resolve())
        assert done["arguments"][done["arguments"].index("--init_from") + 1] == str(own.resolve())
        G = rtil.load_generator(tmp_path / "out" / "train" / name / "generator.pt")
        assert G.provenance["init_from"]["sha256"] == rtil.importers.common.sha256(own)
    assert run_study(config, stages=["train"])["ran"]["train"] == 0  # done: nothing to redo
    shutil.copyfile(DATA / "nvlabs" / "tiny-16px.pkl", own)  # the same architecture, other weights
    with pytest.raises(RtilError, match="'vanilla' in .* was trained with other settings"):
        stage_items(read_study_config(config), "train")
    # an interrupted run (no done.json yet) started from the earlier file is not resumed from the new one
    (tmp_path / "out" / "train" / "vanilla" / "done.json").unlink()
    with pytest.raises(RtilError, match="'vanilla': its interrupted run .* started from another file"):
        train_arguments(read_study_config(config), "vanilla")


@pytest.mark.parametrize("case, message", [
    ("two files", "a same-start pair must continue the same generator's checkpoint"),
    ("missing", "generators.vanilla.init_from.file: no such file"),
    ("another size", "makes 16 as resolution, but the training config trains at data.resolution 32 "
                     r"\(set data.resolution: 16\)"),
    ("another family", "holds a stylegan2 generator, but the training config trains a pggan"),
    ("extra key", "init_from needs exactly 'generator'"),
])
def test_init_from_file_errors_are_one_line_before_any_work(tmp_path, case, message):
    other = DATA / "nvlabs" / "tiny-16px.pkl"
    path = {"two files": lambda: file_config(tmp_path, NVLABS, other),
            "missing": lambda: file_config(tmp_path, tmp_path / "none.pkl", tmp_path / "none.pkl")}.get(
        case, lambda: file_config(tmp_path))()
    cfg = yaml.safe_load(path.read_text())
    if case == "another size":
        cfg["generators"]["vanilla"]["set"]["data.resolution"] = 32
    if case == "another family":
        cfg["generators"]["vanilla"]["config"] = str(Path(__file__).resolve().parent.parent / "configs" / "study" /
                                                     "pggan_digits16.yaml")
    if case == "extra key":
        cfg["generators"]["vanilla"]["init_from"]["kimg"] = 5
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(RtilError, match=message) as error:
        read_study_config(path)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_malicious_init_from_file_is_refused_unrun(tmp_path):
    marker = tmp_path / "payload_ran"
    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"g_ema": _Payload(marker)}))
    with pytest.raises(RtilError, match="nothing in it was run|needs arbitrary code"):
        read_study_config(file_config(tmp_path, evil, evil))
    assert not marker.exists()


# ---- the training config of a generator file ------------------------------------------------
def built_module(config: dict):
    """The training module train.py builds from the config (its model and data sections)."""
    cls = {"StyleGAN2Module": StyleGAN2Module, "PGGANModule": PGGANModule}[config["model"]["class_path"].split(".")[-1]]
    return cls(resolution=config["data"]["resolution"], img_channels=config["data"]["channels"],
               **config["model"]["init_args"])


def test_training_config_of_our_stylegan2_file_carries_its_recorded_settings(tmp_path):
    path = DATA / "stylegan2_digits_5kimg.pt"
    config, notes = training_config_from_file(path, tmp_path / "images", total_kimg=4)
    init = config["model"]["init_args"]
    assert config["model"]["class_path"] == "rtil.training.StyleGAN2Module"
    assert config["data"] == {"dataset": "folder", "path": str(tmp_path / "images"), "resolution": 32, "channels": 1,
                              "batch_size": 16, "num_workers": 0, "flip": False}
    assert (init["z_dim"], init["w_dim"], init["channel_base"], init["channel_max"]) == (64, 64, 2048, 64)
    assert init["rtil"] == {"kind": "gaussian", "cut_points": [1, 2, 3], "sigma": 1.0}  # as configs/stylegan2_digits
    assert (init["r1_gamma"], init["ema_kimg"], init["member_sampling"], init["total_kimg"]) == (2.0, 1.0, "all", 4)
    assert any("recorded" in line for line in notes)
    check_generator_fits(built_module(config), read_init_source(path))


def test_training_config_of_an_nvlabs_pickle_has_the_default_cut_points(tmp_path):
    config, notes = training_config_from_file(DATA / "nvlabs" / "tiny-32px.pkl", tmp_path)
    assert config["model"]["init_args"]["rtil"]["cut_points"] == [1, 2, 3]
    assert config["data"]["channels"] == 3 and "r1_gamma" not in config["model"]["init_args"]
    assert "defaults (the file records none)" in notes[1]
    check_generator_fits(built_module(config), read_init_source(DATA / "nvlabs" / "tiny-32px.pkl"))


def test_training_config_of_pggan_files_is_dirichlet_fusion_at_full_resolution(tmp_path):
    from rtil.models.pggan import Generator, rtil_authors_arch

    ours = rtil.save_generator(tmp_path / "p.pt", Generator(z_dim=8, resolution=16, img_channels=3,
                                                            channels={4: 8, 8: 8, 16: 4}))
    config, _ = training_config_from_file(ours, tmp_path)
    init = config["model"]["init_args"]
    assert config["model"]["class_path"] == "rtil.training.PGGANModule"
    assert init["rtil"] == {"kind": "dirichlet", "codes_per_member": [10, 20], "cut_point": 2}  # 16 px: cut 2
    assert init["channel_table"] == {4: 8, 8: 8, 16: 4} and init["progressive"] is False
    check_generator_fits(built_module(config), read_init_source(ours))
    # the RTIL authors' PGGAN format (tests/test_init_from.py's fixture), recording its own family
    from test_init_from import rtil_authors_pggan_state

    channels = {4: 8, 8: 8, 16: 4}
    state = rtil_authors_pggan_state(channels)
    authors = tmp_path / "rtil_mgan.pt"
    torch.save({"g_ema": state, "step": 2, "alpha": 1.0, "args": argparse.Namespace(z_number=[2, 3])}, authors)
    config, _ = training_config_from_file(authors, tmp_path)
    arch = rtil_authors_arch(z_dim=8, resolution=16, channels=channels)
    init = config["model"]["init_args"]
    assert init["upsample_mode"] == arch["upsample_mode"] and init["latent_gain"] == arch["latent_gain"]
    check_generator_fits(built_module(config), read_init_source(authors))


@pytest.mark.parametrize("suffix", [".pkl", ".pt", ".safetensors", ".ckpt"])
def test_init_from_a_file_in_each_format_is_read_when_the_config_is_read(tmp_path, suffix):
    """The same generator as NVlabs' pickle, as our generator file, as safetensors and as one of our training
    checkpoints (made here from the fixture): each is an init_from file of the study, hashed into the fingerprint,
    its architecture checked. (A rosinality file has no fixture of this architecture: train.py's own tests cover
    that format, tests/test_init_from.py.)"""
    from rtil.cli import main
    from rtil.training.cli import main as train_main

    path = tmp_path / f"g{suffix}"
    if suffix == ".pkl":
        shutil.copyfile(NVLABS, path)
    elif suffix == ".ckpt":
        (tmp_path / "train.yaml").write_text(TRAINING)
        train_main(["fit", "--config", str(tmp_path / "train.yaml"), "--init_from", str(NVLABS), "--wandb", "disabled",
                    "--model.init_args.total_kimg", "0.004", "--trainer.default_root_dir", str(tmp_path / "runs"),
                    "--run_name", "r", "--trainer.enable_progress_bar", "false"])
        shutil.copyfile(tmp_path / "runs" / "r" / "checkpoints" / "last.ckpt", path)
    else:
        assert main(["convert", "nvlabs", str(NVLABS), str(tmp_path / "g.pt")]) in (None, 0)
        if suffix == ".safetensors":
            rtil.save_generator(path, rtil.load_generator(tmp_path / "g.pt"))
    cfg = read_study_config(file_config(tmp_path, path, path))
    start = {"file": str(path.resolve()), "sha256": rtil.importers.common.sha256(path)}
    assert cfg.generators["rtil"].init_from == start
    assert train_arguments(cfg, "vanilla")[-2:] == ["--init_from", str(path.resolve())]
