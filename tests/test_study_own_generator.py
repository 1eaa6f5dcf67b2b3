"""`python -m rtil study --generator FILE --data DIR --out OUT` (rtil/study/own_generator.py): from a pretrained
generator and an image folder to the paired report, resumable from the study config it writes; and one-line
errors for bad generator files, folders and options, before anything is written."""

import csv
import os
import pickle
from pathlib import Path

import pytest
import yaml

from rtil.checkpoints import load_generator
from rtil.cli import main as rtil_main
from rtil.data.digits import save_digits_images
from rtil.study.own_generator import MARK

GENERATOR = Path(__file__).resolve().parent / "data" / "stylegan2_digits_5kimg.pt"  # StyleGAN2, 32 px, gray


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and err.splitlines()[-1] == lines[0], err
    return lines[0]


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    """The 297 test digits as 32-px gray PNGs: the image folder of the generator."""
    folder = tmp_path_factory.mktemp("own") / "digits"
    save_digits_images(folder, "test", 32)
    return folder


def test_one_command_from_a_generator_and_a_folder_to_the_report_and_a_resume_does_nothing(digits, tmp_path,
                                                                                          capsys, monkeypatch):
    import json

    from test_sample_quality import StandInFeatures

    from rtil.evaluation import sample_quality

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))  # no Inception weights file there
    out = tmp_path / "out"
    assert rtil_main(["study", "--generator", str(GENERATOR), "--data", str(digits), "--out", str(out),
                      "--quick"]) == 0
    captured = capsys.readouterr()
    printed = captured.out
    assert "held out 32 validation images" in printed and "training keeps 165" in printed
    assert ("estimate: skipped: its warm-up (10 training steps per arm) would take longer than this run's training "
            "(2 step(s) per arm, --quick)") in printed
    for bar in ("train: 100%", "training: 100%", "export: 100%", "tune: 100%", "evaluate: 100%"):
        assert bar in captured.err, bar  # the stages' progress bars, and the kimg bar of each training run
    study = yaml.safe_load((out / "study.yaml").read_text())
    assert (out / "study.yaml").read_text().startswith(MARK)
    assert study["train_kimg"] == 0.032 and study["quick"] == {} and study["fdd_samples"] == 0
    assert study["generators"]["rtil_seed0"]["init_from"] == {"file": str(GENERATOR)}
    assert study["methods"]["ilo"]["cut_points"] == [0, 1, 2, 3]  # cut 0 and the RTIL family's cut points
    training = yaml.safe_load((out / "training.yaml").read_text())
    assert training["data"]["exclude"] == str(out / "held_out.txt")
    assert training["model"]["init_args"]["rtil"]["cut_points"] == [1, 2, 3]
    with open(out / "results_per_image.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["generator"] for r in rows} == {"vanilla_seed0", "rtil_seed0"}
    assert {(r["method"], r["task"]) for r in rows} == {(m, t) for m in ("ilo", "csgm") for t in ("cs", "inpaint",
                                                                                                    "sr")}
    held_out = set((out / "held_out.txt").read_text().split())
    test_names = {r["image"].split("__", 1)[1] for r in rows}
    assert test_names <= held_out  # every test image was left out of training
    for name in ("vanilla_seed0", "rtil_seed0"):  # and training read the folder without them
        data = load_generator(out / "work" / "generators" / f"{name}.pt").provenance["data"]
        assert (data["path"], data["exclude"], data["excluded"]) == (str(digits), str(out / "held_out.txt"), 132)
    report = (out / "results.md").read_text()
    assert "## stylegan2_digits_5kimg.pt continued 0.032 kimg, as vanilla vs as RTIL" in report
    assert "FDD per member" not in report and "Fréchet digits distance of" not in report
    # no Inception weights here (the tests are offline): FID and KID unavailable, with the reason, in the export
    # records and the report
    for name in ("vanilla_seed0", "rtil_seed0"):
        quality = json.loads((out / "work" / "fdd" / f"{name}.json").read_text())["fid_kid"]
        assert quality["num_generated"] == 16 and quality["weights_missing"]
        assert "downloads are off" in quality["unavailable"]
        assert f"| {name} (from stylegan2_digits_5kimg.pt) | 0 | 0.0 |" in report
    assert "FID, KID: unavailable: the FID Inception weights are not in $TORCH_HOME/hub/checkpoints/" in report
    assert "| unavailable |" in report
    # the written config resumes and finds everything done, with or without --quick (it holds the quick budget)
    for quick in ([], ["--quick"]):
        assert rtil_main(["study", "--config", str(out / "study.yaml"), *quick]) == 0
        printed = capsys.readouterr().out
        for stage in ("train", "export", "tune", "evaluate"):
            assert f"[{stage}] 0 to do" in printed, (quick, printed)
    # so does the command itself with the same options; other options for this OUT are refused
    assert rtil_main(["study", "--generator", str(GENERATOR), "--data", str(digits), "--out", str(out),
                      "--quick"]) == 0
    printed = capsys.readouterr().out
    assert "[evaluate] 0 to do" in printed and "estimate: skipped: the study resumes" in printed
    assert rtil_main(["study", "--generator", str(GENERATOR), "--data", str(digits), "--out", str(out), "--quick",
                      "--seeds", "0,1"]) == 2
    assert "was written with other options (comparisons differs)" in one_line_error(capsys)
    # once there is an Inception weights file (here a stand-in feature network, loaded instead of the file), a
    # rerun exports again with FID and KID per member, of the 16 generated images against the 4 test images;
    # nothing else is redone
    sample_quality.inception_weights_path().parent.mkdir(parents=True)
    sample_quality.inception_weights_path().write_bytes(b"stand-in")
    monkeypatch.setattr(sample_quality, "load_inception", lambda offline=False: (StandInFeatures(), None))
    assert rtil_main(["study", "--config", str(out / "study.yaml"), "--quick"]) == 0
    printed = capsys.readouterr().out
    assert "[export] 2 to do" in printed and "[train] 0 to do" in printed and "[evaluate] 0 to do" in printed
    report = (out / "results.md").read_text()
    assert "FID, KID: 16 generated images per member against the study's 4 test images" in report
    for name, members in (("vanilla_seed0", 1), ("rtil_seed0", 4)):
        quality = json.loads((out / "work" / "fdd" / f"{name}.json").read_text())["fid_kid"]
        assert (quality["num_generated"], quality["num_real"], len(quality["members"])) == (16, 4, members)
        assert "unavailable" not in quality and all(m["fid"] >= 0 and m["kid_subset_size"] == 4
                                                    for m in quality["members"])
        cell = ", ".join(f"{m['fid']:.2f} / {m['kid_mean']:.4f}" for m in quality["members"])
        assert f"| {cell} |" in report


def test_the_command_prints_the_estimated_time_from_a_measured_warm_up_before_the_study_starts(digits, tmp_path,
                                                                                               capsys, monkeypatch):
    """A run longer than its warm-up (here 3 training steps per arm, 2 and 4 solver steps per method): the estimate
    line, in minutes, is printed before the study starts (the study itself is not run here), and its extrapolation
    is the warm-up's times scaled to the arms' steps, the tuning runs and the cells."""
    import re
    from dataclasses import replace

    from rtil.study import estimate, runner
    from rtil.study.config_reading import read_study_config
    from rtil.study.own_generator import OwnStudy, run_own_study

    monkeypatch.setattr(estimate, "WARMUP_STEPS", 3)
    monkeypatch.setattr(estimate, "SOLVER_WARMUP_STEPS", 2)
    before_start = []
    monkeypatch.setattr(runner, "run_study", lambda *args, **kwargs: before_start.append(capsys.readouterr().out))
    out = tmp_path / "out"
    run_own_study(OwnStudy(generator=str(GENERATOR), data=str(digits), out=str(out), kimg=0.1, validation_images=4,
                           test_images=4))
    line = next(line for line in before_start[0].splitlines() if line.startswith("estimated: "))
    number = r"~(\d+(?:\.\d+)?(?:e-\d+)?) min"
    match = re.match(rf"estimated: training {number} \(vanilla\) and {number} \(RTIL\) per arm, tuning {number} "
                     rf"\(26 runs\), evaluation {number} \(12 cells\); {number} in all with 1 worker\(s\)\. An "
                     rf"extrapolation from a 3-step training warm-up of each arm and a 2-step solver warm-up", line)
    assert match and all(float(v) > 0 for v in match.groups()), line
    assert not (out / "work").exists()  # the warm-up trained in a temporary folder
    # 7 steps per arm (0.1 kimg at batch 16); per generator, one sweep of ILO's three 3-point axes and CSGM's lr and
    # noise-map axes plus a cross run (8 and 5 runs), 3 cells per method; 4 validation and 4 test images
    cfg = read_study_config(out / "study.yaml")
    costs = {"ilo": (60.0, 0.0), "csgm": (0.0, 30 / (300 * 4))}  # a run: ILO 60 s fixed, CSGM 300 steps of 4 images
    assert estimate.estimate_line(cfg, {"vanilla_seed0": 60 / 7, "rtil_seed0": 120 / 7}, costs).startswith(
        "estimated: training ~1 min (vanilla) and ~2 min (RTIL) per arm, tuning ~21 min (26 runs), evaluation ~9 min "
        "(12 cells); ~33 min in all with 1 worker(s).")
    assert " ~11 min in all with 3 worker(s)." in estimate.estimate_line(
        replace(cfg, jobs=3), {"vanilla_seed0": 60 / 7, "rtil_seed0": 120 / 7}, costs)


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("case, message", [
    ("missing generator", "--generator {tmp}/none.pt: no such file"),
    ("foreign generator", "not a generator or checkpoint file rtil reads"),
    ("malicious generator", "nothing in it was run"),
    ("malicious torch file", "needs arbitrary code to unpickle"),
    ("missing folder", "image folder {tmp}/nowhere does not exist"),
    ("out in the folder", "overlap; the held-out images written to --out would be read as training images"),
    ("out of the user", "holds files this command did not write"),
    ("bad task", "--tasks: task: unknown task 'deblur'"),
    ("bad set key", "set: 'model.init_args.learning_rate' is not a setting of the training config"),
    ("config too", "--generator writes and runs its own study config: leave out --config"),
    ("no data", "--generator needs --data"),
    ("own options without a generator", "; --data is an option of the second form"),
])
def test_bad_inputs_are_one_line_errors_before_anything_is_written(digits, tmp_path, capsys, case, message):
    marker = tmp_path / "MARKER"
    out = tmp_path / "out"
    generator, data, extra = str(GENERATOR), str(digits), []
    if case == "missing generator":
        generator = str(tmp_path / "none.pt")
    elif case == "foreign generator":
        generator = str(tmp_path / "notes.txt")
        Path(generator).write_text("not a generator\n")
    elif case == "malicious generator":
        generator = str(tmp_path / "evil.pkl")
        Path(generator).write_bytes(pickle.dumps({"g_ema": Payload(marker)}))
    elif case == "malicious torch file":
        import torch

        generator = str(tmp_path / "evil.pt")
        torch.save({"g_ema": {"w": torch.zeros(1)}, "payload": Payload(marker)}, generator)
    elif case == "missing folder":
        data = str(tmp_path / "nowhere")
    elif case == "out in the folder":
        out = digits / "study"
    elif case == "out of the user":
        out.mkdir()
        (out / "mine.txt").write_text("keep me")
    elif case == "bad task":
        extra = ["--tasks", "cs:0.25,deblur:2"]
    elif case == "bad set key":
        extra = ["--set", "model.init_args.learning_rate=0.1"]
    elif case == "config too":
        extra = ["--config", str(tmp_path / "study.yaml")]
    args = ["study", "--generator", generator, "--data", data, "--out", str(out), "--quick", *extra]
    if case == "no data":
        args = ["study", "--generator", generator, "--out", str(out)]
    if case == "own options without a generator":
        args = ["study", "--config", str(tmp_path / "study.yaml"), "--data", data]
    assert rtil_main(args) == 2
    assert message.format(tmp=tmp_path) in one_line_error(capsys)
    assert not marker.exists(), "the planted pickle ran"
    if case == "out of the user":
        assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]
    elif case != "out in the folder":
        assert not out.exists()
    assert not (digits / "study").exists()


def test_a_study_of_folder_data_gets_no_digits_distance(digits, tmp_path):
    """FDD compares samples with the built-in digits: a study whose generators train on an image folder (even one of
    digits) computes none by default and refuses fdd_samples > 0; it computes FID and KID (1000 generated images per
    member, 16 with --quick), a digits study by default not."""
    from test_study import tiny_study

    from rtil.errors import RtilError
    from rtil.study.config_reading import read_study_config
    from rtil.study.own_generator import OwnStudy, write_own_study

    path = write_own_study(OwnStudy(generator=str(GENERATOR), data=str(digits), out=str(tmp_path / "out"),
                                    validation_images=4, test_images=4))
    cfg = yaml.safe_load(path.read_text())
    assert cfg["quick"]["out"] == str(tmp_path / "out" / "quick" / "work")  # the full config's quick run
    del cfg["fdd_samples"]
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert read_study_config(path).fdd_samples == 0
    assert (read_study_config(path).fid_samples, read_study_config(path, quick=True).fid_samples) == (1000, 16)
    (tmp_path / "digits_study").mkdir()
    assert read_study_config(tiny_study(tmp_path / "digits_study")).fid_samples == 0
    path.write_text(yaml.safe_dump({**cfg, "fid_samples": 1}, sort_keys=False))
    with pytest.raises(RtilError, match="fid_samples must be 0 \\(no FID/KID\\) or at least 2"):
        read_study_config(path)
    cfg["fdd_samples"] = 32
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(RtilError, match="fdd_samples 32: the Fréchet digits distance compares samples with the "
                                        "built-in digits, but generator 'vanilla_seed0' trains on other data"):
        read_study_config(path)


def test_a_rosinality_checkpoint_is_a_generator_of_the_command(tmp_path):
    """A rosinality StyleGAN2 file (RGB, z = w = style_dim) and a folder of RGB images of its size: the command's
    study config starts both arms from the file (hashed), derives a Gaussian RTIL family at the default cuts and
    checks that the training config builds a generator the file's weights fit (rtil/training/init_from.py)."""
    import torch
    from PIL import Image
    from test_rosinality_import import as_rosinality_state, rosinality_generator

    from rtil.importers.common import sha256
    from rtil.study.config_reading import read_study_config
    from rtil.study.own_generator import OwnStudy, write_own_study

    G = rosinality_generator(size=16, style_dim=8, table=lambda size, multiplier: {4: 16, 8: 16, 16: 8})
    generator = tmp_path / "rosinality.pt"
    torch.save({"g_ema": as_rosinality_state(G), "latent_avg": G.mapping.w_avg.clone()}, generator)
    images = tmp_path / "images"
    images.mkdir()
    pixels = torch.Generator().manual_seed(0)
    for i in range(30):
        array = torch.randint(0, 256, (16, 16, 3), generator=pixels, dtype=torch.uint8).numpy()
        Image.fromarray(array).save(images / f"{i:03d}.png")
    path = write_own_study(OwnStudy(generator=str(generator), data=str(images), out=str(tmp_path / "out"),
                                    validation_images=4, test_images=4))
    cfg = read_study_config(path)
    for arm in cfg.generators.values():
        assert arm.init_from == {"file": str(generator.resolve()), "sha256": sha256(generator)}
    training = yaml.safe_load((tmp_path / "out" / "training.yaml").read_text())
    assert training["model"]["init_args"]["rtil"]["kind"] == "gaussian"
    assert training["model"]["init_args"]["rtil"]["cut_points"]
    assert training["model"]["init_args"]["z_dim"] == training["model"]["init_args"]["w_dim"] == 8
    assert (training["data"]["resolution"], training["data"]["channels"]) == (16, 3)
