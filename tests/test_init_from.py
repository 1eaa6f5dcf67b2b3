"""`train.py fit --init_from FILE`: every supported format starts the module's G, G_ema (and D where the file has a
mappable one) at the file's networks; a run from a file trains and exports; misfits and unsafe files are refused."""

import argparse
import math
import pickle
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from test_rosinality_import import as_rosinality_state

import rtil
from conftest import perturb_, tiny_stylegan2
from rtil.errors import RtilError
from rtil.importers.nvlabs import load_nvlabs, load_nvlabs_discriminator, read_network_pickle
from rtil.importers.rtil_pggan import load_rtil_pggan
from rtil.models.pggan import rtil_authors_arch
from rtil.nn import fir_filter
from rtil.training import PGGANModule, StyleGAN2Module
from rtil.training.cli import main
from rtil.training.init_from import apply_init_source, read_init_source

ROOT = Path(__file__).resolve().parent.parent
NVLABS = ROOT / "tests" / "data" / "nvlabs"
CONFIG = str(ROOT / "configs" / "stylegan2_digits.yaml")
# tiny_stylegan2(16, 3) as training-module settings
TINY = dict(resolution=16, img_channels=3, z_dim=16, w_dim=16, mapping_layers=2, channel_base=128, channel_max=16)
GAUSSIAN = {"kind": "gaussian", "cut_points": [1, 2], "sigma": 1.0}
# the NVlabs snapshot tiny-16px-gd.pkl (tests/data/nvlabs/make_init_from_pickle.py) as train.py options
NVLABS_ARGS = ["--data.resolution", "16", "--data.channels", "1", "--data.batch_size", "4",
               "--model.init_args.z_dim", "8", "--model.init_args.w_dim", "16", "--model.init_args.mapping_layers", "2",
               "--model.init_args.channel_base", "256", "--model.init_args.channel_max", "16",
               "--model.init_args.mbstd_group_size", "2", "--wandb", "disabled", "--trainer.enable_progress_bar",
               "false", "--trainer.enable_model_summary", "false", "--checkpoint.every_kimg", "1000",
               "--samples.every_kimg", "1000"]


def started_from(module, path):
    """The module after --init_from `path` (what train.py does before the first step)."""
    h = module.hparams
    apply_init_source(module, read_init_source(path, h.get("mbstd_group_size", 4), h.get("mapping_lr_mul", 0.01)))
    return module


def assert_same_generator(G, reference, z_dim):
    z = torch.randn(4, z_dim, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        for mode in ("const", "random"):
            ours = G(z, noise_mode=mode, generator=torch.Generator().manual_seed(4))
            theirs = reference(z, noise_mode=mode, generator=torch.Generator().manual_seed(4))
            assert (ours - theirs).abs().max() <= 1e-6


def assert_same_discriminator(D, reference):
    x = torch.randn(4, D.img_channels, D.resolution, D.resolution, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert (D(x) - reference(x)).abs().max() <= 1e-6


# ---- our own files --------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_generator_file_starts_g_and_ema_and_not_d(tmp_path, suffix, capsys):
    G_ema, G_raw = tiny_stylegan2(), perturb_(tiny_stylegan2(), seed=2)
    path = rtil.save_generator(tmp_path / f"g{suffix}", G_ema.eval(), G=G_raw.eval())
    module = started_from(StyleGAN2Module(**TINY, rtil=GAUSSIAN), path)  # vanilla file -> RTIL run
    assert_same_generator(module.G_ema, G_ema, 16)
    assert_same_generator(module.G, G_raw, 16)
    record = module.hparams["init_from"]
    assert record["file"] == path.name and record["sha256"] == rtil.importers.common.sha256(path)
    assert record["discriminator"].startswith("trained from scratch (an rtil generator file holds no discriminator")
    assert module.generator_record()["provenance"]["init_from"]["sha256"] == record["sha256"]
    assert torch.equal(module.pl_mean, torch.zeros(3))  # a generator file has no path-length means


def test_generator_file_without_raw_weights_starts_g_from_ema(tmp_path):
    G_ema = tiny_stylegan2()
    path = rtil.save_generator(tmp_path / "g.pt", G_ema.eval())
    module = started_from(StyleGAN2Module(**TINY), path)
    assert_same_generator(module.G, G_ema, 16)
    assert module.hparams["init_from"]["g"].startswith("g_ema")


def test_lightning_checkpoint_carries_g_ema_d_and_path_length_means(tmp_path):
    run = main(["fit", "--config", CONFIG, *NVLABS_ARGS, "--model.init_args.rtil", "null",
                "--model.init_args.total_kimg", "0.008", "--trainer.default_root_dir", str(tmp_path)])
    ckpt = tmp_path / "stylegan2_digits_vanilla" / "checkpoints" / "last.ckpt"
    source = run.model
    assert float(source.pl_mean[0]) != 0.0
    settings = dict(resolution=16, img_channels=1, z_dim=8, w_dim=16, mapping_layers=2, channel_base=256,
                    channel_max=16, mbstd_group_size=2)
    module = started_from(StyleGAN2Module(**settings, rtil=GAUSSIAN), ckpt)  # vanilla checkpoint -> RTIL run
    assert_same_generator(module.G_ema, source.G_ema, 8)
    assert_same_generator(module.G, source.G, 8)
    assert_same_discriminator(module.D, source.D)
    assert torch.equal(module.pl_mean, source.pl_mean[0].repeat(3))  # every member starts from G0's mean
    assert int(module.nimg) == 0 and int(module.iteration) == 0  # the clock starts afresh
    same_family = started_from(StyleGAN2Module(**settings), ckpt)
    assert torch.equal(same_family.pl_mean, source.pl_mean)


def test_pggan_lightning_checkpoint_rtil_to_vanilla(tmp_path):
    pggan = str(ROOT / "configs" / "pggan_digits.yaml")
    run = main(["fit", "--config", pggan, "--data.resolution", "8", "--data.batch_size", "4",
                "--model.init_args.z_dim", "8", "--model.init_args.channel_table", "{4: 8, 8: 8}",
                "--model.init_args.mbstd_group_size", "2", "--model.init_args.rtil",
                "{kind: dirichlet, codes_per_member: [2], cut_point: 1}", "--model.init_args.total_kimg", "0.008",
                "--wandb", "disabled", "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary",
                "false", "--checkpoint.every_kimg", "1000", "--samples.every_kimg", "1000",
                "--trainer.default_root_dir", str(tmp_path)])
    source = run.model
    module = started_from(PGGANModule(resolution=8, img_channels=1, z_dim=8, channel_table={4: 8, 8: 8},
                                      upsample_mode="bilinear", mbstd_group_size=2, rtil=None),
                          tmp_path / "pggan_digits" / "checkpoints" / "last.ckpt")
    assert float(module.G_ema.lod) == float(source.G_ema.lod)
    assert_same_generator(module.G_ema, source.G_ema, 8)
    assert_same_generator(module.G, source.G, 8)
    assert_same_discriminator(module.D, source.D)
    assert module.hparams["init_from"]["discriminator"] == "imported"


# ---- rosinality -----------------------------------------------------------------------------
def rosinality_discriminator_state(num_blocks, channels, seed=0):
    """Random tensors under rosinality's Discriminator keys (model.py: ConvLayer, ResBlock, final layers)."""
    g = torch.Generator().manual_seed(seed)
    res = sorted(channels, reverse=True)  # R, R/2, ..., 4

    def w(*shape):
        return torch.randn(*shape, generator=g)

    state = {"convs.0.0.weight": w(channels[res[0]], 3, 1, 1), "convs.0.1.bias": 0.3 * w(channels[res[0]])}
    for k in range(1, num_blocks + 1):
        c_in, c_out = channels[res[k - 1]], channels[res[k]]
        state.update({f"convs.{k}.conv1.0.weight": w(c_in, c_in, 3, 3), f"convs.{k}.conv1.1.bias": 0.3 * w(c_in),
                      f"convs.{k}.conv2.0.kernel": fir_filter(), f"convs.{k}.conv2.1.weight": w(c_out, c_in, 3, 3),
                      f"convs.{k}.conv2.2.bias": 0.3 * w(c_out), f"convs.{k}.skip.0.kernel": fir_filter(),
                      f"convs.{k}.skip.1.weight": w(c_out, c_in, 1, 1)})
    c4 = channels[4]
    state.update({"final_conv.0.weight": w(c4, c4 + 1, 3, 3), "final_conv.1.bias": 0.3 * w(c4),
                  "final_linear.0.weight": w(c4, c4 * 16), "final_linear.0.bias": 0.3 * w(c4),
                  "final_linear.1.weight": w(1, c4), "final_linear.1.bias": 0.3 * w(1)})
    return state


def rosinality_discriminator(state, x, num_blocks):
    """rosinality's Discriminator.forward written out with torch ops on its state (stddev group 4, 1 feature)."""
    def conv(x, key, stride=1, padding=None, blur_pad=None):
        weight = state[key]
        if blur_pad is not None:
            kernel = fir_filter()[None, None].expand(x.shape[1], 1, 4, 4)
            x = F.conv2d(F.pad(x, (blur_pad,) * 4), kernel, groups=x.shape[1])
        scale = 1 / math.sqrt(weight[0].numel())
        pad = weight.shape[-1] // 2 if padding is None else padding
        return F.conv2d(x, weight * scale, stride=stride, padding=pad)

    def act(x, bias):  # FusedLeakyReLU
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return F.leaky_relu(x + bias.view(shape), 0.2) * math.sqrt(2)

    out = act(conv(x, "convs.0.0.weight"), state["convs.0.1.bias"])
    for k in range(1, num_blocks + 1):
        y = act(conv(out, f"convs.{k}.conv1.0.weight"), state[f"convs.{k}.conv1.1.bias"])
        y = act(conv(y, f"convs.{k}.conv2.1.weight", stride=2, padding=0, blur_pad=2), state[f"convs.{k}.conv2.2.bias"])
        skip = conv(out, f"convs.{k}.skip.1.weight", stride=2, padding=0, blur_pad=1)
        out = (y + skip) / math.sqrt(2)
    b, c, h, w = out.shape
    group = min(b, 4)
    std = torch.sqrt(out.view(group, -1, 1, c, h, w).var(0, unbiased=False) + 1e-8)
    std = std.mean([2, 3, 4], keepdim=True).squeeze(2).repeat(group, 1, h, w)
    out = act(conv(torch.cat([out, std], 1), "final_conv.0.weight"), state["final_conv.1.bias"])
    lin0, lin1 = state["final_linear.0.weight"], state["final_linear.1.weight"]
    out = act(F.linear(out.view(b, -1), lin0 / math.sqrt(lin0.shape[1])), state["final_linear.0.bias"])
    return F.linear(out, lin1 / math.sqrt(lin1.shape[1]), state["final_linear.1.bias"])


def test_rosinality_training_checkpoint_starts_g_ema_and_d(tmp_path):
    G_ema, G_raw = tiny_stylegan2().eval(), perturb_(tiny_stylegan2(), seed=2).eval()
    d = rosinality_discriminator_state(2, G_ema.channels)
    path = tmp_path / "010000.pt"
    torch.save({"g": as_rosinality_state(G_raw), "g_ema": as_rosinality_state(G_ema), "d": d,
                "g_optim": {}, "d_optim": {}, "latent_avg": G_ema.mapping.w_avg.clone(),
                "args": argparse.Namespace(size=16, n_mlp=2, latent=16)}, path)
    module = started_from(StyleGAN2Module(**TINY, rtil=GAUSSIAN), path)
    assert_same_generator(module.G_ema, G_ema, 16)
    G_raw.mapping.w_avg.copy_(module.G.mapping.w_avg)  # rosinality keeps latent_avg for g_ema only
    assert_same_generator(module.G, G_raw, 16)
    assert_same_discriminator(module.D, lambda x: rosinality_discriminator(d, x, 2))
    assert module.hparams["init_from"]["format"] == "rosinality"
    assert module.hparams["init_from"]["discriminator"] == "imported"


def test_rosinality_converted_file_has_no_discriminator(tmp_path):
    G_ema = tiny_stylegan2().eval()
    path = tmp_path / "ffhq.pt"
    torch.save({"g_ema": as_rosinality_state(G_ema), "latent_avg": G_ema.mapping.w_avg.clone()}, path)
    module = started_from(StyleGAN2Module(**TINY), path)
    assert_same_generator(module.G_ema, G_ema, 16)
    assert "holds no discriminator 'd'" in module.hparams["init_from"]["discriminator"]


# ---- NVlabs ---------------------------------------------------------------------------------
def test_nvlabs_pickle_matches_nvlabs_networks():
    """tiny-16px-gd.pkl: G_ema, G and D with outputs recorded from NVlabs' own code."""
    path = NVLABS / "tiny-16px-gd.pkl"
    module = started_from(StyleGAN2Module(resolution=16, img_channels=1, z_dim=8, w_dim=16, mapping_layers=2,
                                          channel_base=256, channel_max=16, mbstd_group_size=2, rtil=GAUSSIAN), path)
    assert_same_generator(module.G_ema, load_nvlabs(path)[0], 8)
    assert_same_generator(module.G, load_nvlabs(path, weights="G")[0], 8)
    expected = torch.load(NVLABS / "expected_init_from.pt", weights_only=True)
    with torch.no_grad():
        assert (module.G_ema(expected["z"], noise_mode="const") - expected["g_ema_images"]).abs().max() <= 1e-4
        assert (module.G(expected["z"], noise_mode="const") - expected["g_images"]).abs().max() <= 1e-4
        assert (module.D(expected["reals"]) - expected["d_logits"]).abs().max() <= 1e-5
    assert module.hparams["init_from"]["discriminator"] == "imported"


def test_nvlabs_discriminator_of_another_channel_table_is_trained_from_scratch():
    """tiny-16px.pkl's D has another channel table than its G; the generator still starts from the file."""
    path = NVLABS / "tiny-16px.pkl"
    module = StyleGAN2Module(resolution=16, img_channels=1, z_dim=8, w_dim=16, mapping_layers=2, channel_base=256,
                             channel_max=16, mbstd_group_size=2)
    D_before = {k: v.clone() for k, v in module.D.state_dict().items()}
    started_from(module, path)
    assert_same_generator(module.G_ema, load_nvlabs(path)[0], 8)
    note = module.hparams["init_from"]["discriminator"]
    assert note.startswith("trained from scratch (the file's discriminator does not fit the config's: tensor")
    assert all(torch.equal(v, D_before[k]) for k, v in module.D.state_dict().items())


def test_nvlabs_discriminator_that_clamps_is_not_mapped():
    data = read_network_pickle(NVLABS / "tiny-16px-gd.pkl")
    data["D"]["state"]["_init_kwargs"]["conv_clamp"] = 256
    with pytest.raises(RtilError, match="D has conv_clamp 256, which rtil's discriminator does not compute"):
        load_nvlabs_discriminator(NVLABS / "tiny-16px-gd.pkl", data=data)


# ---- the RTIL authors' PGGAN ----------------------------------------------------------------
def rtil_authors_pggan_state(channels: dict) -> dict:
    """A random generator state in the RTIL authors' PGGAN format (8 latent channels, RGB), for `channels`."""
    g = torch.Generator().manual_seed(0)
    state = {"input_layer.0.conv.weight_orig": torch.randn(8, 8, 4, 4, generator=g),
             "input_layer.0.conv.bias": 0.1 * torch.randn(8, generator=g)}
    for r, c in channels.items():
        c_in = channels[max(r // 2, 4)]
        for index, fan_in in ((0, c_in), (3, c)):
            state[f"progression_{r}.conv.{index}.conv.weight_orig"] = torch.randn(c, fan_in, 3, 3, generator=g)
            state[f"progression_{r}.conv.{index}.conv.bias"] = 0.1 * torch.randn(c, generator=g)
        state[f"to_rgb_{r}.conv.weight_orig"] = torch.randn(3, c, 1, 1, generator=g)
        state[f"to_rgb_{r}.conv.bias"] = 0.1 * torch.randn(3, generator=g)
    return state


def test_rtil_authors_pggan(tmp_path):
    channels = {4: 8, 8: 8, 16: 4}
    state = rtil_authors_pggan_state(channels)
    path = tmp_path / "rtil_mgan.pt"
    torch.save({"g": state, "g_ema": {k: v * 0.9 for k, v in state.items()}, "d": {"linear.linear.bias": torch.ones(1)},
                "step": 2, "alpha": 1.0, "args": argparse.Namespace(z_number=[2, 3])}, path)
    arch = rtil_authors_arch(z_dim=8, resolution=16, channels=channels)
    module = PGGANModule(resolution=16, img_channels=3, z_dim=8, channel_table=channels,
                         upsample_mode=arch["upsample_mode"], normalize_latent=False, pixel_norm_first=True,
                         first_block_convs=2, latent_gain=arch["latent_gain"], torgb_gain=arch["torgb_gain"],
                         progressive=False, rtil={"kind": "dirichlet", "codes_per_member": [2], "cut_point": 2})
    started_from(module, path)
    assert_same_generator(module.G_ema, load_rtil_pggan(path)[0], 8)
    assert_same_generator(module.G, load_rtil_pggan(path, weights="g")[0], 8)
    assert "pixel norm" in module.hparams["init_from"]["discriminator"]


def test_pggan_setting_that_changes_the_function_is_named(tmp_path):
    channels = {4: 8, 8: 8, 16: 4}
    G = rtil.models.pggan.Generator(**rtil_authors_arch(z_dim=8, resolution=16, channels=channels))
    path = rtil.save_generator(tmp_path / "p.pt", G)
    module = PGGANModule(resolution=16, img_channels=3, z_dim=8, channel_table=channels, first_block_convs=2)
    with pytest.raises(RtilError, match="upsample_mode: file 'bilinear', config 'nearest' "
                                        r"\(set --model.init_args.upsample_mode bilinear\)"):
        started_from(module, path)


# ---- through train.py -----------------------------------------------------------------------
def test_training_run_from_an_nvlabs_pickle_exports(tmp_path, capsys):
    run = main(["fit", "--config", CONFIG, *NVLABS_ARGS, "--init_from", str(NVLABS / "tiny-16px-gd.pkl"),
                "--model.init_args.rtil", "{kind: gaussian, cut_points: [1, 2]}", "--model.init_args.total_kimg",
                "0.008", "--trainer.default_root_dir", str(tmp_path), "--run_name", "ft"])
    out = capsys.readouterr().out
    assert "discriminator: imported from the file" in out and "path-length means: start at 0" in out
    assert int(run.model.nimg) >= 8 and int(run.model.iteration) == 2
    G = rtil.load_generator(Path(run.trainer.log_dir) / "generator.pt")
    assert G.rtil["cut_points"] == [1, 2]
    assert G.provenance["init_from"]["file"] == "tiny-16px-gd.pkl"
    assert G.provenance["init_from"]["sha256"] == rtil.importers.common.sha256(NVLABS / "tiny-16px-gd.pkl")
    assert G(torch.randn(2, 8), noise_mode="const").shape == (2, 1, 16, 16)
    # a resume of that run (--ckpt_path, no --init_from) keeps naming the file it started from
    resumed = main(["fit", "--config", CONFIG, *NVLABS_ARGS, "--model.init_args.rtil",
                    "{kind: gaussian, cut_points: [1, 2]}", "--model.init_args.total_kimg", "0.012",
                    "--trainer.default_root_dir", str(tmp_path), "--run_name", "ft", "--ckpt_path", "last"])
    assert int(resumed.model.iteration) == 3
    assert resumed.model.hparams["init_from"]["file"] == "tiny-16px-gd.pkl"


def exit_line(args, capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1
    return err[0]


def test_a_file_that_does_not_fit_names_the_tensor_and_the_option(tmp_path, capsys):
    args = ["fit", "--config", CONFIG, *NVLABS_ARGS, "--init_from", str(NVLABS / "tiny-16px-gd.pkl"),
            "--trainer.default_root_dir", str(tmp_path)]
    line = exit_line([*args, "--model.init_args.channel_max", "8"], capsys)
    assert "tensor blocks.0.const: expected shape (8, 4, 4), found (16, 4, 4)" in line
    assert "--model.init_args.channel_max 16" in line
    line = exit_line([*args, "--model.init_args.mapping_layers", "3"], capsys)
    assert "tensor mapping.layers.2.weight: expected shape (16, 16), missing" in line
    assert "--model.init_args.mapping_layers 2" in line
    line = exit_line([*args, "--data.resolution", "32"], capsys)
    assert "tensor" in line and "--data.resolution 16" in line
    assert not (tmp_path / "stylegan2_digits" / "checkpoints" / "last.ckpt").exists()


def test_init_from_with_ckpt_path_is_refused(tmp_path, capsys):
    line = exit_line(["fit", "--config", CONFIG, *NVLABS_ARGS, "--init_from", str(NVLABS / "tiny-16px-gd.pkl"),
                      "--ckpt_path", "last", "--trainer.default_root_dir", str(tmp_path)], capsys)
    assert "--init_from and --ckpt_path cannot be combined" in line


class _Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("name", ["evil.pkl", "evil.pt", "evil.ckpt"])
def test_a_malicious_pickle_never_runs(tmp_path, capsys, name):
    marker = tmp_path / "payload_ran"
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"G_ema": _Payload(marker), "g_ema": _Payload(marker)}))
    line = exit_line(["fit", "--config", CONFIG, *NVLABS_ARGS, "--init_from", str(path),
                      "--trainer.default_root_dir", str(tmp_path)], capsys)
    assert "nothing in it was run" in line or "needs arbitrary code" in line
    assert not marker.exists()
