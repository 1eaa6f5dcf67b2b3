"""train.py's command line: a run from a config, `--ckpt_path last` resume, and clear config errors."""

from pathlib import Path

import pytest
import torch

import rtil
from rtil.training.cli import RtilCLI, build_cli, main

TINY = ["--data.resolution", "8", "--data.batch_size", "4", "--model.init_args.z_dim", "8",
        "--model.init_args.w_dim", "8", "--model.init_args.channel_base", "64", "--model.init_args.channel_max", "8",
        "--model.init_args.mbstd_group_size", "2",
        "--model.init_args.rtil", "{kind: gaussian, cut_points: [1, 2], sigma: 1.0}",
        "--wandb", "disabled", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--checkpoint.every_kimg", "1000", "--samples.every_kimg", "1000"]
CONFIG = str(Path(__file__).resolve().parent.parent / "configs" / "stylegan2_digits.yaml")


def test_fit_then_resume_from_last(tmp_path):
    common = ["fit", "--config", CONFIG, *TINY, "--trainer.default_root_dir", str(tmp_path)]
    first = main([*common, "--model.init_args.total_kimg", "0.008"])  # 2 iterations
    assert int(first.model.iteration) == 2
    last = tmp_path / "stylegan2_digits" / "checkpoints" / "last.ckpt"  # the run's name comes from its config
    assert last.is_file()
    second = main([*common, "--model.init_args.total_kimg", "0.016", "--ckpt_path", "last"])
    assert int(second.model.iteration) == 4  # continued from iteration 2, not restarted
    G = rtil.load_generator(Path(second.trainer.log_dir) / "generator.pt")
    assert G.rtil["cut_points"] == [1, 2] and G.provenance["kimg"] == pytest.approx(0.016)
    assert G(torch.randn(2, 8), noise_mode="const").shape == (2, 1, 8, 8)
    assert any((Path(second.trainer.log_dir) / "samples").glob("*.png"))
    again = main([*common, "--model.init_args.total_kimg", "0.016", "--ckpt_path", "last"])
    assert int(again.model.iteration) == 4  # a finished run resumed: not one batch more


def test_bad_configuration_exits_with_status_2(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", CONFIG, *TINY, "--trainer.default_root_dir", str(tmp_path),
              "--data.dataset", "folder", "--data.path", str(tmp_path / "missing")])
    assert exit_info.value.code == 2
    assert "error:" in capsys.readouterr().err


@pytest.fixture(scope="module")
def malicious(tmp_path_factory):
    import pickle

    path = tmp_path_factory.mktemp("bad") / "evil.ckpt"

    class Payload:
        def __reduce__(self):
            return (print, ("payload ran",))

    path.write_bytes(pickle.dumps(Payload()))
    return path


@pytest.mark.parametrize("args, message", [
    (["--data.resolution", "33"], "power of two"),
    (["--data.channels", "2"], "channels"),
    (["--model.init_args.rtil", "{kind: gaussian, cut_points: [9]}"], "cut point 9 does not exist"),
    (["--model.init_args.rtil", "{kind: dirichlet, codes_per_member: [2]}"], "rtil.kind must be 'gaussian'"),
    (["--model.init_args.rtil", "{kind: bogus}"], "rtil.kind must be"),
    (["--model.init_args.rtil", "{kind: gaussian, cut_points: [1], sigma: -1}"], "sigma must be >= 0"),
    (["--model.init_args.rtil", "{kind: gaussian, cut_point: [1]}"], "unexpected keyword argument 'cut_point'"),
    (["--model.init_args.rtil", "[1, 2]"], "rtil"),
    (["--model.init_args.member_sampling", "bogus"], "member_sampling"),
    (["--model.init_args.lr", "-1"], "lr must be > 0"),
    (["--checkpoint.every_kimg", "0"], "every_kimg must be > 0"),
    (["--checkpoint.every_kimg", "-1"], "every_kimg must be > 0"),
    (["--samples.every_kimg", "0"], "every_kimg must be > 0"),
    (["--ckpt_path", "last"], "no"),
    (["--ckpt_path", "MISSING"], "no such checkpoint"),
    (["--ckpt_path", "DIR"], "no such checkpoint"),
    (["--ckpt_path", "TRUNCATED"], "truncated"),
    (["--ckpt_path", "GENERATOR"], "not an rtil training checkpoint"),
    (["--ckpt_path", "MALICIOUS"], "not a Lightning checkpoint"),
    (["--data.resolution", "abc"], "Expected a <class 'int'>"),
    (["--no_such_option", "1"], "unrecognized arguments"),
    (["--model.init_args.resolution", "16"], "give --data.resolution instead"),
    (["--model.init_args.img_channels", "3"], "give --data.channels instead"),
    (["--trainer.max_steps", "-5"], "bad --trainer option: `max_steps` must be"),
    (["--trainer.limit_train_batches", "1.5"], "bad --trainer option: You have passed invalid value 1.5"),
    (["--trainer.accelerator", "bogus"], "bad --trainer option: You selected an invalid accelerator name"),
    (["--trainer.devices", "-3"], "bad --trainer option: `devices`"),
    (["--trainer.accumulate_grad_batches", "0"], "--trainer.accumulate_grad_batches"),
    (["--trainer.accumulate_grad_batches", "2"], "Lightning cannot accumulate its gradients; leave it at 1"),
    (["--trainer.gradient_clip_val", "1.0"], "Lightning cannot clip its gradients; leave it unset"),
])
def test_bad_training_input_is_one_error_line_and_status_2(tmp_path, capsys, malicious, args, message):
    generator = tmp_path / "g.pt"
    rtil.save_generator(generator, rtil.models.stylegan2.Generator(z_dim=8, w_dim=8, resolution=8, img_channels=1,
                                                                  mapping_layers=1, channel_base=64, channel_max=8))
    truncated = tmp_path / "t.ckpt"
    truncated.write_bytes(generator.read_bytes()[:1000])
    files = {"MISSING": tmp_path / "nope.ckpt", "DIR": tmp_path, "TRUNCATED": truncated, "GENERATOR": generator,
             "MALICIOUS": malicious}
    args = [str(files.get(a, a)) for a in args]
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--config", CONFIG, *TINY, "--trainer.default_root_dir", str(tmp_path / "run"), *args])
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    assert captured.err.startswith("error:") and message in captured.err and captured.err.count("\n") == 1
    assert "Traceback" not in captured.err + captured.out and "payload ran" not in captured.out


def test_lightning_optimizer_options_that_would_replace_the_gan_optimizers_are_gone(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["fit", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--model" in text and "--optimizer" not in text and "--lr_scheduler" not in text


def test_a_resume_applies_a_new_learning_rate_and_refuses_a_new_architecture(tmp_path, capsys):
    common = ["fit", "--config", CONFIG, *TINY, "--trainer.default_root_dir", str(tmp_path)]
    main([*common, "--model.init_args.total_kimg", "0.008", "--model.init_args.lr", "0.002"])
    resumed = main([*common, "--model.init_args.total_kimg", "0.016", "--model.init_args.lr", "0.001",
                    "--ckpt_path", "last"])
    assert int(resumed.model.iteration) == 4
    c = 4 / 5  # StyleGAN2's lazy-regularisation factor for G (pl_interval 4)
    assert resumed.trainer.optimizers[0].param_groups[0]["lr"] == pytest.approx(0.001 * c)  # not the saved 0.002
    assert "lr 0.002 -> 0.001" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main([*common, "--model.init_args.total_kimg", "0.024", "--model.init_args.channel_max", "16",
              "--ckpt_path", "last"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "channel_max: checkpoint 8, now 16" in err and err.count("\n") == 1


def test_vanilla_and_rtil_runs_of_one_config_get_separate_folders(tmp_path):
    common = ["fit", "--config", CONFIG, *TINY, "--trainer.default_root_dir", str(tmp_path),
              "--model.init_args.total_kimg", "0.004"]
    main(common)
    main([*common, "--model.init_args.rtil", "null"])
    assert (tmp_path / "stylegan2_digits" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "stylegan2_digits_vanilla" / "checkpoints" / "last.ckpt").is_file()


def test_each_training_in_one_process_gets_its_own_wandb_run(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    common = ["fit", "--config", CONFIG, *TINY, "--trainer.default_root_dir", str(tmp_path), "--wandb", "offline",
              "--model.init_args.total_kimg", "0.004"]
    common.remove("disabled")
    common.remove("--wandb")
    ids = []
    for name in ("a", "b"):
        cli = main([*common, "--run_name", name])
        ids.append(cli.trainer.loggers[-1].version)
        assert wandb.run is None  # finished, not left open for the next training
    assert ids[0] != ids[1]


def test_progress_bar_counts_kimg_with_seconds_per_kimg(tmp_path, capsys):
    i = TINY.index("--trainer.enable_progress_bar")
    args = TINY[:i] + TINY[i + 2:]
    main(["fit", "--config", CONFIG, *args, "--trainer.default_root_dir", str(tmp_path),
          "--model.init_args.total_kimg", "0.012"])
    err = capsys.readouterr().err
    assert "/0.012 kimg" in err and "s/kimg" in err and "Epoch 0" not in err


def test_the_nested_rtil_setting_trains_a_pggan(tmp_path):
    config = str(Path(CONFIG).parent / "pggan_digits.yaml")
    tiny = ["--data.resolution", "8", "--data.batch_size", "4", "--model.init_args.z_dim", "8",
            "--model.init_args.channel_table", "{4: 8, 8: 8}", "--model.init_args.channel_base", "64",
            "--model.init_args.channel_max", "8", "--model.init_args.mbstd_group_size", "2",
            "--model.init_args.rtil", "{kind: dirichlet, codes_per_member: [2], cut_point: 1}"]
    quiet = TINY[TINY.index("--wandb"):]
    cli = main(["fit", "--config", config, *tiny, *quiet, "--trainer.default_root_dir", str(tmp_path),
                "--model.init_args.total_kimg", "0.008"])
    assert int(cli.model.iteration) == 2 and cli.model.num_members == 2
    G = rtil.load_generator(Path(cli.trainer.log_dir) / "generator.pt")
    assert G.rtil == {"kind": "dirichlet", "codes_per_member": [2], "cut_point": 1}
    resumed = main(["fit", "--config", config, *tiny, *quiet, "--trainer.default_root_dir", str(tmp_path),
                    "--model.init_args.total_kimg", "0.012", "--ckpt_path", "last"])  # channel_table compares equal
    assert int(resumed.model.iteration) == 3


def test_a_resume_refuses_another_rtil_family_and_reads_checkpoints_with_the_flat_keys(tmp_path, capsys):
    common = ["fit", "--config", CONFIG, *TINY, "--trainer.default_root_dir", str(tmp_path)]
    main([*common, "--model.init_args.total_kimg", "0.004"])
    for other in ("{kind: gaussian, cut_points: [1]}", "{kind: gaussian, cut_points: [1, 2], sigma: 0.5}", "null"):
        with pytest.raises(SystemExit) as exit_info:
            main([*common, "--model.init_args.total_kimg", "0.008", "--run_name", "stylegan2_digits",
                  "--model.init_args.rtil", other, "--ckpt_path", "last"])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err
        assert "rtil: checkpoint {'kind': 'gaussian', 'cut_points': [1, 2], 'sigma': 1.0}" in err
        assert err.count("\n") == 1
    # A checkpoint of an earlier release records the flat keys: the same family in the nested form resumes it.
    last = tmp_path / "stylegan2_digits" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(last, weights_only=False)
    hparams = ckpt["hyper_parameters"]
    hparams.pop("rtil")
    hparams.update(rtil_cut_points=[1, 2], rtil_sigma=1.0)
    torch.save(ckpt, last)
    resumed = main([*common, "--model.init_args.total_kimg", "0.008", "--ckpt_path", "last"])
    assert int(resumed.model.iteration) == 2
    with pytest.raises(SystemExit) as exit_info:
        main([*common, "--model.init_args.total_kimg", "0.012", "--run_name", "stylegan2_digits",
              "--model.init_args.rtil", "null", "--ckpt_path", "last"])
    assert exit_info.value.code == 2 and "now None" in capsys.readouterr().err


PGGAN_TINY = ["--data.resolution", "16", "--data.batch_size", "4", "--model.init_args.channel_max", "16",
              "--model.init_args.rtil", "{kind: dirichlet, codes_per_member: [2], cut_point: 2}",
              "--wandb", "disabled", "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false", "--checkpoint.every_kimg", "1000",
              "--samples.every_kimg", "1000"]


@pytest.mark.parametrize("config, tiny, extra", [
    (CONFIG, TINY, ["--model.init_args.r1_interval", "2", "--model.init_args.pl_interval", "2"]),
    (str(Path(CONFIG).with_name("pggan_digits.yaml")), PGGAN_TINY, []),
])
def test_bf16_mixed_precision_trains_with_manual_optimisation_and_regularisers(tmp_path, config, tiny, extra):
    """bf16 autocast on CPU through our manual optimisation, R1 and path-length terms, EMA and export."""
    cli = main(["fit", "--config", config, *tiny, *extra, "--trainer.precision", "bf16-mixed",
                "--model.init_args.total_kimg", "0.016", "--trainer.default_root_dir", str(tmp_path)])
    assert int(cli.model.iteration) == 4
    losses = {k: float(v) for k, v in cli.trainer.callback_metrics.items() if k.startswith("loss/")}
    assert losses and all(torch.isfinite(torch.tensor(v)) for v in losses.values()), losses
    G = rtil.load_generator(Path(cli.trainer.log_dir) / "generator.pt")
    assert all(p.dtype == torch.float32 and torch.isfinite(p).all() for p in G.state_dict().values()
               if p.is_floating_point())
    if hasattr(cli.model, "pl_mean"):
        assert cli.model.pl_mean.dtype == torch.float32 and (cli.model.pl_mean != 0).any()


class _Parsed(Exception):
    pass


class _ParseOnly(RtilCLI):
    """The training CLI, stopped once its arguments are parsed and checked (nothing built)."""

    def before_instantiate_classes(self):
        raise _Parsed(self.config)


def test_linked_model_settings_given_directly_must_be_the_datas(tmp_path, capsys):
    config = tmp_path / "model16.yaml"
    config.write_text("model:\n  init_args:\n    resolution: 16\n")
    for args, message in [(["--model.init_args.resolution", "16"], "--model.init_args.resolution 16 differs from "
                                                                     "--data.resolution 8"),
                          (["--model.init_args.img_channels", "3"], "--model.init_args.img_channels 3 differs from "
                                                                      "--data.channels 1"),
                          (["--config", str(config)], "give --data.resolution instead")]:
        with pytest.raises(SystemExit) as exit_info:
            build_cli(["fit", "--config", CONFIG, *TINY, *args], _ParseOnly)
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and err.startswith("error: ") and message in err and err.count("\n") == 1
    with pytest.raises(_Parsed) as parsed:  # the data's own values given again are no error
        build_cli(["fit", "--config", CONFIG, *TINY, "--model.init_args.resolution", "8", "--data.channels", "3",
                   "--model.init_args.img_channels", "3"], _ParseOnly)
    model = parsed.value.args[0].fit.model.init_args
    assert (model.resolution, model.img_channels) == (8, 3)


def test_the_data_seed_may_differ_from_the_model_seed(tmp_path):
    from rtil.data.datamodule import GanDataModule

    assert GanDataModule(seed=3).hparams == {**GanDataModule().hparams, "data_seed": 3}
    assert "seed" not in GanDataModule().hparams
    cli = main(["fit", "--config", CONFIG, *TINY, "--trainer.default_root_dir", str(tmp_path),
                "--model.init_args.total_kimg", "0.004", "--seed_everything", "7", "--data.seed", "3",
                "--model.init_args.seed", "5"])
    assert int(cli.model.iteration) == 1
    assert cli.model.hparams["seed"] == 5 and cli.datamodule.hparams["data_seed"] == 3
    logged = (Path(cli.trainer.log_dir) / "hparams.yaml").read_text()
    assert "\ndata_seed: 3\n" in logged and "\nseed: 5\n" in logged


@pytest.mark.filterwarnings("default:a warning about rtil:UserWarning")  # shown, as a user would see it
def test_a_warning_of_a_setting_that_is_an_error_does_not_come_before_the_error_line(tmp_path, capsys, monkeypatch):
    import sys
    import warnings

    from rtil.training import stylegan2_module

    def to_stderr(message, category, filename, lineno, file=None, line=None):  # as without pytest's capture
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))

    monkeypatch.setattr(warnings, "showwarning", to_stderr)
    real_rtil_config = stylegan2_module.rtil_config

    def rtil_config_with_a_warning(rtil, *args, **kwargs):  # a warning about the setting, then its check
        warnings.warn(f"a warning about rtil {rtil}", UserWarning, stacklevel=2)
        return real_rtil_config(rtil, *args, **kwargs)

    monkeypatch.setattr(stylegan2_module, "rtil_config", rtil_config_with_a_warning)
    common = ["fit", "--config", CONFIG, *TINY, "--trainer.default_root_dir", str(tmp_path)]
    with pytest.raises(SystemExit) as exit_info:
        main([*common, "--model.init_args.rtil", "{kind: gaussian, cut_points: [9]}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.startswith("error: RTIL cut point 9") and err.count("\n") == 1
    main([*common, "--model.init_args.total_kimg", "0.004", "--model.init_args.rtil", "{kind: gaussian, "
                                                                                       "cut_points: [1]}"])
    assert "a warning about rtil {'kind': 'gaussian', 'cut_points': [1]}" in capsys.readouterr().err  # shown
