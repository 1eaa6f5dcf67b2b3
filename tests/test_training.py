"""StyleGAN2 family training: one step per RTIL setting, exact resume, NaN guard, export."""

import hashlib
import re
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import rtil
from conftest import make_trainer
from rtil.checkpoints import export_lightning_checkpoint
from rtil.data.datamodule import GanDataModule
from rtil.errors import RtilError
from rtil.training import StyleGAN2Module
from rtil.training.callbacks import KimgCheckpoint

TINY = dict(resolution=8, img_channels=1, z_dim=8, w_dim=8, mapping_layers=1, channel_base=64, channel_max=8,
            mbstd_group_size=2, r1_interval=2, pl_interval=2, ema_kimg=0.01)
BATCH = 4


def gaussian(*cut_points, sigma=1.0):
    """The `rtil` setting of a StyleGAN2Module trained with the Gaussian RTIL family at `cut_points`."""
    return {"kind": "gaussian", "cut_points": list(cut_points), "sigma": sigma}


def iterations_kimg(n):
    return n * BATCH / 1000


def fit(tmp_path, iterations, ckpt_path=None, callbacks=(), **kw):
    torch.manual_seed(0)  # the same initial weights in every run
    module = StyleGAN2Module(**{**TINY, **kw}, total_kimg=iterations_kimg(iterations))
    data = GanDataModule(resolution=8, channels=1, batch_size=BATCH, seed=0)
    trainer = make_trainer(tmp_path, callbacks)
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return module, trainer


@pytest.mark.parametrize("settings", [
    dict(rtil=None),
    dict(rtil=gaussian(1, 2)),
    dict(rtil=gaussian(1, 2), member_sampling="one"),
    dict(rtil=gaussian(2), member_weighting="lambda", member_lambda=0.7),
])
def test_training_steps_run_for_every_rtil_setting(tmp_path, settings):
    module, _ = fit(tmp_path, 2, **settings)
    assert int(module.iteration) == 2 and int(module.nimg) == 2 * BATCH
    assert module.num_members == 1 + len((settings["rtil"] or {}).get("cut_points", []))
    if settings.get("member_sampling") != "one":  # all members trained: every path-length mean moved
        assert torch.all(module.pl_mean > 0)
    # The EMA generator moved away from its initial copy and differs from the raw generator.
    assert not torch.equal(module.G_ema.blocks[0].conv1.weight, module.G.blocks[0].conv1.weight)


def test_member_weights_match_the_configuration():
    assert StyleGAN2Module(**TINY, rtil=gaussian(0, 1, 2)).member_weights == [0.25] * 4
    lam = StyleGAN2Module(**TINY, rtil=gaussian(1, 2), member_weighting="lambda", member_lambda=0.6)
    assert lam.member_weights == pytest.approx([0.6, 0.2, 0.2])
    with pytest.raises(RtilError):
        StyleGAN2Module(**TINY, rtil=gaussian(1, 9))
    with pytest.raises(RtilError):
        StyleGAN2Module(**TINY, member_sampling="some")


def _state(module, trainer):
    opt_states = [o.state_dict()["state"] for o in trainer.optimizers]
    return module.state_dict(), opt_states


def test_resume_is_exact(tmp_path):
    straight, t_straight = fit(tmp_path / "a", 5, rtil=gaussian(1, 2))
    ckpt = KimgCheckpoint(dirpath=str(tmp_path / "b" / "ckpt"), every_kimg=1000)
    fit(tmp_path / "b", 3, rtil=gaussian(1, 2), callbacks=[ckpt])
    last = tmp_path / "b" / "ckpt" / "last.ckpt"
    assert last.is_file()
    resumed, t_resumed = fit(tmp_path / "b", 5, ckpt_path=str(last), rtil=gaussian(1, 2),
                             callbacks=[KimgCheckpoint(dirpath=str(tmp_path / "b" / "ckpt"), every_kimg=1000)])
    (s1, o1), (s2, o2) = _state(straight, t_straight), _state(resumed, t_resumed)
    assert int(resumed.iteration) == 5
    for key in s1:
        torch.testing.assert_close(s1[key], s2[key], rtol=0, atol=0, msg=key)
    for a, b in zip(o1, o2, strict=True):
        for index in a:
            for name in a[index]:
                torch.testing.assert_close(a[index][name], b[index][name], rtol=0, atol=0)


def test_nan_loss_stops_with_clear_error_and_keeps_last_checkpoint(tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    fit(tmp_path, 2, callbacks=[KimgCheckpoint(dirpath=str(ckpt_dir), every_kimg=1000)])
    last = ckpt_dir / "last.ckpt"
    digest = hashlib.sha256(last.read_bytes()).hexdigest()

    class Poison(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            with torch.no_grad():
                module.D.out.weight.fill_(float("nan"))

    with pytest.raises(RtilError, match="became nan"):
        fit(tmp_path, 4, ckpt_path=str(last),
            callbacks=[KimgCheckpoint(dirpath=str(ckpt_dir), every_kimg=1000), Poison()])
    assert hashlib.sha256(last.read_bytes()).hexdigest() == digest


def test_export_from_lightning_checkpoint(tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    module, _ = fit(tmp_path, 2, rtil=gaussian(1),
                    callbacks=[KimgCheckpoint(dirpath=str(ckpt_dir), every_kimg=1000)])
    out = export_lightning_checkpoint(ckpt_dir / "last.ckpt", tmp_path / "g.pt")
    G = rtil.load_generator(out)
    z = torch.randn(3, 8)
    torch.testing.assert_close(G(z, noise_mode="const"), module.G_ema.eval()(z, noise_mode="const"), rtol=0, atol=0)
    assert G.rtil == {"kind": "gaussian", "cut_points": [1], "sigma": 1.0}
    assert G.provenance["kimg"] == pytest.approx(0.008) and G.provenance["data"]["dataset"] == "digits"
    with pytest.raises(RtilError, match="not a Lightning checkpoint"):
        export_lightning_checkpoint(out, tmp_path / "x.pt")


def test_checkpoint_every_kimg_must_be_positive():
    for bad in (0, -1):
        with pytest.raises(RtilError, match="every_kimg must be > 0"):
            KimgCheckpoint(every_kimg=bad)


def test_periodic_checkpoints_are_all_kept_by_default(tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    fit(tmp_path, 9, callbacks=[KimgCheckpoint(dirpath=str(ckpt_dir), every_kimg=iterations_kimg(3))])
    names = sorted(p.name for p in ckpt_dir.iterdir())  # every 12 images: kimg 0.012, 0.024, 0.036
    assert [n for n in names if n.startswith("kimg")] == ["kimg00000.01.ckpt", "kimg00000.02.ckpt",
                                                          "kimg00000.04.ckpt"]
    assert "last.ckpt" in names
    assert not [n for n in names if n.endswith(".partial")]


def test_checkpoints_are_atomic_with_the_temp_dir_on_another_filesystem(tmp_path, monkeypatch):
    """Lightning stages saves in the temp dir; ours are renamed next to the target, so a write that dies half-way
    leaves the previous checkpoint whole, wherever the temp dir is."""
    import os

    shm = "/dev/shm"
    if not os.path.isdir(shm) or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("no temp dir on another filesystem than the checkpoint folder")
    monkeypatch.setenv("TMPDIR", shm)
    ckpt_dir = tmp_path / "ckpt"
    callback = KimgCheckpoint(dirpath=str(ckpt_dir), every_kimg=1000)
    _, trainer = fit(tmp_path, 2, callbacks=[callback])
    last = ckpt_dir / "last.ckpt"
    before = last.read_bytes()
    real_save = trainer.save_checkpoint

    def dies_half_way(path, weights_only=False):
        real_save(path, weights_only)
        data = Path(path).read_bytes()
        Path(path).write_bytes(data[: len(data) // 2])  # the crash: half a file where the write went
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer, "save_checkpoint", dies_half_way)
    with pytest.raises(KeyboardInterrupt):
        callback._save_checkpoint(trainer, str(last))
    assert last.read_bytes() == before
    torch.load(last, weights_only=True)


def test_a_non_finite_training_state_is_never_written(tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    callback = KimgCheckpoint(dirpath=str(ckpt_dir), every_kimg=1000)
    module, trainer = fit(tmp_path, 2, callbacks=[callback])
    last = ckpt_dir / "last.ckpt"
    before = last.read_bytes()
    state = next(iter(trainer.optimizers[0].state.values()))
    state["exp_avg_sq"].view(-1)[0] = float("inf")  # what a too-high learning rate leaves in Adam
    with pytest.warns(UserWarning, match="exp_avg_sq is not finite.*last good checkpoint"):
        callback._save_checkpoint(trainer, str(last))
    assert last.read_bytes() == before


def test_the_nested_rtil_setting_is_the_generator_files_form_and_the_flat_keys_are_translated_with_a_warning():
    """The one test that gives a module the deprecated flat keys of the Gaussian family (rtil_cut_points,
    rtil_sigma) and asserts their DeprecationWarning; every other test gives the nested `rtil` setting (PGGAN's
    flat keys: tests/test_pggan_training.py; files of earlier releases that record flat keys, read without a
    warning: tests/test_train_cli.py, tests/test_study.py)."""
    nested = StyleGAN2Module(**TINY, rtil={"kind": "gaussian", "cut_points": [1, 2], "sigma": 0.5})
    assert nested.family.to_config() == nested.hparams["rtil"] == {"kind": "gaussian", "cut_points": [1, 2],
                                                                   "sigma": 0.5}
    assert StyleGAN2Module(**TINY, rtil={"cut_points": [1]}).hparams["rtil"]["kind"] == "gaussian"  # kind implied
    # The warning names the nested key in both forms: in a config and on train.py's command line.
    expected = "{kind: gaussian, cut_points: [1, 2], sigma: 0.5}"
    with pytest.warns(DeprecationWarning, match=re.escape(f"rtil_cut_points, rtil_sigma: deprecated, to be removed "
                                                          f"in the next release; use the nested key `rtil: {expected}` "
                                                          f"instead (on the command line: --model.init_args.rtil "
                                                          f"'{expected}')")) as caught:
        flat = StyleGAN2Module(**TINY, rtil_cut_points=[1, 2], rtil_sigma=0.5)
    assert caught[0].filename == __file__  # it points at the line that gave the flat keys
    assert flat.hparams["rtil"] == nested.hparams["rtil"] and "rtil_cut_points" not in flat.hparams
    # A flat key overrides the matching key of the nested setting (a config in the new form, an old command line).
    with pytest.warns(DeprecationWarning, match="rtil_cut_points: deprecated"):
        both = StyleGAN2Module(**TINY, rtil={"kind": "gaussian", "cut_points": [1, 2], "sigma": 0.5},
                               rtil_cut_points=[2])
    assert both.hparams["rtil"] == {"kind": "gaussian", "cut_points": [2], "sigma": 0.5}
    with pytest.warns(DeprecationWarning, match="`rtil: null`"):  # no cut points: vanilla, as before
        assert StyleGAN2Module(**TINY, rtil_cut_points=[]).family is None
    for vanilla in (None, {"kind": "gaussian", "cut_points": []}):
        module = StyleGAN2Module(**TINY, rtil=vanilla)
        assert module.family is None and module.num_members == 1 and module.hparams["rtil"] is None
    for bad, message in [({"kind": "dirichlet", "codes_per_member": [2]}, "rtil.kind must be 'gaussian'"),
                         ({"kind": "gaussian", "cut_points": [1, 9]}, "cut point 9 does not exist"),
                         ({"kind": "gaussian", "cut_points": [1], "sigma": -1.0}, "sigma must be >= 0"),
                         ([1, 2], "rtil must be a mapping")]:
        with pytest.raises(RtilError, match=message):
            StyleGAN2Module(**TINY, rtil=bad)


def test_the_nested_form_trains_and_is_what_checkpoints_record(tmp_path):
    ckpt_dir = tmp_path / "ckpt"
    module, _ = fit(tmp_path, 2, rtil={"kind": "gaussian", "cut_points": [1, 2]},
                    callbacks=[KimgCheckpoint(dirpath=str(ckpt_dir), every_kimg=1000)])
    assert module.num_members == 3 and torch.all(module.pl_mean > 0)
    saved = torch.load(ckpt_dir / "last.ckpt", weights_only=False)
    assert saved["hyper_parameters"]["rtil"] == saved["rtil_generator"]["rtil"] == {
        "kind": "gaussian", "cut_points": [1, 2], "sigma": 1.0}
    assert not any(k.startswith("rtil_") for k in saved["hyper_parameters"])


def test_w_avg_and_path_length_means_are_averaged_across_processes(tmp_path, monkeypatch):
    """Each rank updates w_avg and pl_mean from its own batch; the module averages them across ranks where they
    are updated (tests/test_ddp.py checks this with two real processes)."""
    from rtil.training import distributed, stylegan2_module

    averaged = []
    monkeypatch.setattr(stylegan2_module, "average_buffers", lambda buffers: averaged.append(list(buffers)))
    module, _ = fit(tmp_path, 1, rtil={"kind": "gaussian", "cut_points": [1]}, pl_interval=1)
    assert any(b[0] is module.G.mapping.w_avg for b in averaged) and any(b[0] is module.pl_mean for b in averaged)

    calls = []
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    monkeypatch.setattr(distributed.dist, "all_reduce", lambda t: (calls.append(t.clone()), t.add_(t + 2.0)))
    a, b, ints = torch.tensor([1.0, 2.0]), torch.tensor(3.0), torch.tensor([5])
    distributed.average_buffers([a, b, ints])  # the other rank holds each value + 2: the mean is value + 1
    assert len(calls) == 1 and a.tolist() == [2.0, 3.0] and b.item() == 4.0 and ints.item() == 5
