"""PGGAN family training: steps per RTIL setting, the lod schedule, Adam resets per lod, exact
resume across a reset, NaN guard, EMA, fused members during fade-ins, export, configs."""

import copy
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

import rtil
from conftest import make_trainer
from rtil.checkpoints import export_lightning_checkpoint
from rtil.data.datamodule import GanDataModule
from rtil.errors import RtilError
from rtil.training import PGGANModule
from rtil.training.callbacks import KimgCheckpoint
from rtil.training.cli import RtilCLI
from rtil.training.pggan_module import lod_phase, lod_schedule

BATCH = 4
KIMG_PER_ITERATION = BATCH / 1000
# 8x8 (lod 1 = 4x4, lod 0 = 8x8): 2 iterations at 4x4, 2 fading 8x8 in, then 8x8.
TINY = dict(resolution=8, img_channels=1, z_dim=8, channel_base=64, channel_max=8, mbstd_group_size=2,
            lod_training_kimg=2 * KIMG_PER_ITERATION, lod_transition_kimg=2 * KIMG_PER_ITERATION)
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def dirichlet(*codes_per_member, cut_point=2):
    """The `rtil` setting of a PGGANModule trained with the Dirichlet RTIL family (members of `codes_per_member`
    codes, fused at `cut_point`)."""
    return {"kind": "dirichlet", "codes_per_member": list(codes_per_member), "cut_point": cut_point}


def fit(tmp_path, iterations, ckpt_path=None, callbacks=(), **kw):
    torch.manual_seed(0)  # the same initial weights in every run
    module = PGGANModule(**{**TINY, **kw}, total_kimg=iterations * KIMG_PER_ITERATION)
    data = GanDataModule(resolution=TINY["resolution"], channels=1, batch_size=BATCH, seed=0)
    trainer = make_trainer(tmp_path, callbacks)
    trainer.fit(module, data, ckpt_path=ckpt_path)
    return module, trainer


class Record(pl.Callback):
    """Per iteration: (lod, Adam step count of one 4x4 generator weight, reset flag)."""

    def __init__(self):
        self.rows = []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        state = trainer.optimizers[0].state[module.G.blocks[0].convs[0].weight]
        self.rows.append((float(module.G.lod), int(state["step"]), int(module.optimizer_lod_phase)))


@pytest.mark.parametrize("settings", [
    dict(rtil=None),
    dict(rtil=dirichlet(2, 3)),
    dict(rtil=dirichlet(2, 3), member_sampling="one"),
])
def test_training_steps_run_for_every_rtil_setting(tmp_path, settings):
    module, _ = fit(tmp_path, 5, **settings)  # 4x4, fade-in, 8x8
    assert int(module.iteration) == 5 and int(module.nimg) == 5 * BATCH
    assert module.num_members == 1 + len((settings["rtil"] or {}).get("codes_per_member", []))
    assert float(module.G.lod) == float(module.D.lod) == float(module.G_ema.lod) == 0.0
    assert (module.family is None) == (settings["rtil"] is None)


def test_lod_schedule_phases_and_fades():
    # 3 levels above 4x4; 10 kimg stable, then 5 kimg fade per phase.
    def lod(kimg):
        return lod_schedule(kimg, max_lod=3, training_kimg=10, transition_kimg=5)

    assert [lod(k) for k in (0, 9.99, 10)] == [3, 3, 3]
    assert lod(12.5) == pytest.approx(2.5) and lod(14) == pytest.approx(2.2)
    assert lod(15) == 2 and lod(25) == 2 and lod(27.5) == pytest.approx(1.5)
    assert lod(30) == 1 and lod(45) == 0 and lod(1000) == 0
    assert lod_schedule(3, 2, training_kimg=0, transition_kimg=2) == pytest.approx(0.5)  # fades only
    assert lod_schedule(3, 2, training_kimg=2, transition_kimg=0) == 1  # jumps only
    assert [lod_phase(x) for x in (3, 2.5, 2, 0.01, 0)] == [6, 5, 4, 1, 0]
    module = PGGANModule(**TINY)
    assert module.max_lod == 1 and module.lod_at(0) == 1 and module.lod_at(0.012) == pytest.approx(0.5)
    assert PGGANModule(**{**TINY, "progressive": False}).lod_at(0) == 0
    with pytest.raises(RtilError, match="lod_training_kimg"):
        PGGANModule(**{**TINY, "lod_training_kimg": 0, "lod_transition_kimg": 0})


def test_adam_is_reset_whenever_floor_or_ceil_of_lod_changes(tmp_path):
    record = Record()
    fit(tmp_path, 6, callbacks=[record], rtil=dirichlet(2))
    # lods 1, 1 (4x4), 0.5 (fade; reset), 0 (8x8; reset), 0 ... ; Adam counts steps since the last reset
    assert record.rows == [(1.0, 1, 2), (1.0, 2, 2), (1.0, 3, 2), (0.5, 1, 1), (0.0, 1, 0), (0.0, 2, 0)]
    record = Record()
    fit(tmp_path, 6, callbacks=[record], reset_optimizer_per_lod=False)
    assert [step for _, step, _ in record.rows] == [1, 2, 3, 4, 5, 6]


def test_progressive_false_trains_at_full_resolution(tmp_path):
    module, _ = fit(tmp_path, 2, progressive=False, rtil=dirichlet(2))
    assert float(module.G.lod) == 0 and int(module.optimizer_lod_phase) == 0


def _state(module, trainer):
    return module.state_dict(), [o.state_dict()["state"] for o in trainer.optimizers]


def test_resume_across_an_optimizer_reset_is_exact(tmp_path):
    kw = dict(rtil=dirichlet(2, 3))
    straight, t_straight = fit(tmp_path / "a", 6, **kw)
    ckpt_dir = tmp_path / "b" / "ckpt"
    fit(tmp_path / "b", 4, callbacks=[KimgCheckpoint(dirpath=str(ckpt_dir), every_kimg=1000)], **kw)  # mid-fade
    resumed, t_resumed = fit(tmp_path / "b", 6, ckpt_path=str(ckpt_dir / "last.ckpt"),
                             callbacks=[KimgCheckpoint(dirpath=str(ckpt_dir), every_kimg=1000)], **kw)
    (s1, o1), (s2, o2) = _state(straight, t_straight), _state(resumed, t_resumed)
    assert int(resumed.iteration) == 6 and int(resumed.optimizer_lod_phase) == 0
    for key in s1:
        torch.testing.assert_close(s1[key], s2[key], rtol=0, atol=0, msg=key)
    for a, b in zip(o1, o2, strict=True):
        assert a.keys() == b.keys()
        for index in a:
            for name in a[index]:
                torch.testing.assert_close(a[index][name], b[index][name], rtol=0, atol=0)

    out = export_lightning_checkpoint(ckpt_dir / "last.ckpt", tmp_path / "g.pt")
    G = rtil.load_generator(out)
    z = torch.randn(3, 8)
    torch.testing.assert_close(G(z), resumed.G_ema.eval()(z), rtol=0, atol=0)
    assert G.rtil == {"kind": "dirichlet", "codes_per_member": [2, 3], "cut_point": 2}
    assert float(G.lod) == 0.0 and G.provenance["training_module"] == "PGGANModule"


def test_nan_loss_stops_with_a_clear_error(tmp_path):
    class Poison(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            if batch_idx == 1:
                with torch.no_grad():
                    module.D.epilogue.out.weight.fill_(float("nan"))

    with pytest.raises(RtilError, match="became nan"):
        fit(tmp_path, 3, callbacks=[Poison()], rtil=dirichlet(2))


def test_ema_is_updated_after_every_generator_step(tmp_path):
    torch.manual_seed(0)
    initial = copy.deepcopy(PGGANModule(**TINY).G)
    module, _ = fit(tmp_path, 1, ema_beta=0.25)
    for (name, p_ema), p_init, p in zip(module.G_ema.named_parameters(), initial.parameters(),
                                        module.G.parameters(), strict=True):
        torch.testing.assert_close(p_ema, torch.lerp(p_init, p, 0.75), msg=name)
    assert not torch.equal(module.G_ema.blocks[0].convs[0].weight, initial.blocks[0].convs[0].weight)
    assert float(module.G_ema.lod) == float(module.G.lod) == 1.0


@pytest.mark.parametrize("lod", [2.0, 1.5, 1.0, 0.5, 0.0])
def test_fused_members_make_full_size_images_at_every_lod(lod):
    module = PGGANModule(**{**TINY, "resolution": 16}, rtil=dirichlet(3, 4, cut_point=3))
    module.set_lod(lod)
    reals = module.G.images_at_lod(torch.rand(BATCH, 1, 16, 16) * 2 - 1)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for member, n in enumerate((1, 3, 4)):
            z, weights = module.draw_codes(member, BATCH, gen)
            assert z.shape == (BATCH, n, 8) and (weights is None) == (n == 1)
            fake = module.fakes(member, z, weights)
            assert fake.shape == reals.shape == (BATCH, 1, 16, 16) and torch.isfinite(fake).all()
            assert module.D(fake).shape == (BATCH, 1)


def test_configs_instantiate(tmp_path):
    from PIL import Image

    def cli(config, *extra):
        return RtilCLI(rtil.training.GanModule, GanDataModule, subclass_mode_model=True, run=False,
                       args=["--config", str(CONFIGS / config), "--wandb", "disabled",
                             "--trainer.default_root_dir", str(tmp_path), *extra])

    digits = cli("pggan_digits.yaml").model
    assert isinstance(digits, PGGANModule) and digits.G.resolution == 32 and digits.num_members == 3

    with pytest.raises(RtilError, match="needs a path"):
        cli("pggan_celebahq256.yaml", "--trainer.accelerator", "cpu", "--trainer.devices", "1")
    folder = tmp_path / "faces"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "a.png")
    celeba = cli("pggan_celebahq256.yaml", "--data.path", str(folder), "--trainer.accelerator", "cpu",
                 "--trainer.devices", "1", "--trainer.strategy", "auto").model
    assert celeba.G.channels == {4: 256, 8: 256, 16: 256, 32: 256, 64: 128, 128: 64, 256: 64}
    assert celeba.family.codes_per_member == [10, 20] and celeba.family.cut_point == 4
    assert celeba.G.img_channels == 3 and celeba.G.upsample_mode == "bilinear"


def test_the_nested_rtil_setting_trains_and_the_flat_keys_are_translated_with_a_warning(tmp_path):
    """The one test that gives a module the deprecated flat keys of the Dirichlet family (rtil_codes_per_member,
    rtil_cut_point) and asserts their DeprecationWarning; every other test gives the nested `rtil` setting
    (StyleGAN2's flat keys: tests/test_training.py)."""
    nested = {"kind": "dirichlet", "codes_per_member": [2, 3], "cut_point": 2}
    module, _ = fit(tmp_path, 2, rtil=nested)
    assert int(module.iteration) == 2 and module.num_members == 3
    assert module.hparams["rtil"] == module.family.to_config() == nested
    expected = r"`rtil: \{kind: dirichlet, codes_per_member: \[2, 3\], cut_point: 2\}`"
    with pytest.warns(DeprecationWarning, match=r"rtil_codes_per_member, rtil_cut_point: deprecated.*" + expected):
        flat = PGGANModule(**TINY, rtil_codes_per_member=[2, 3], rtil_cut_point=2)
    assert flat.hparams["rtil"] == nested and "rtil_cut_point" not in flat.hparams
    # A flat key overrides the matching key of the nested setting; a cut point without members is vanilla, as before.
    with pytest.warns(DeprecationWarning, match="rtil_codes_per_member: deprecated"):
        assert PGGANModule(**TINY, rtil=nested, rtil_codes_per_member=[4]).hparams["rtil"] == dirichlet(4)
    with pytest.warns(DeprecationWarning, match="rtil_cut_point: deprecated.*`rtil: null`"):
        assert PGGANModule(**TINY, rtil_cut_point=2).family is None
    assert PGGANModule(**TINY, rtil=None).family is None
    with pytest.raises(RtilError, match="rtil.kind must be 'dirichlet'"):
        PGGANModule(**TINY, rtil={"kind": "gaussian", "cut_points": [1]})
    with pytest.raises(RtilError, match="fusion cut point 9 does not exist"):
        PGGANModule(**TINY, rtil={"kind": "dirichlet", "codes_per_member": [2], "cut_point": 9})
