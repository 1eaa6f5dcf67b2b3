"""Exported generator files: round trip, atomic writes, and refusal of unsafe or foreign files."""

import os
import pickle

import pytest
import torch

import rtil
from conftest import tiny_stylegan2
from rtil.atomic_files import atomic_torch_save
from rtil.checkpoints import read_generator_file, save_generator
from rtil.errors import RtilError


def test_export_load_gives_identical_images(tmp_path):
    G = tiny_stylegan2(16, 1).eval()
    G.mapping.w_avg.normal_()
    raw = tiny_stylegan2(16, 1)
    path = save_generator(tmp_path / "g.pt", G, G=raw, rtil={"kind": "gaussian", "cut_points": [1, 2], "sigma": 1.0},
                          provenance={"source": "test"})
    loaded = rtil.load_generator(path)
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    z = torch.randn(3, 16)
    torch.testing.assert_close(loaded(z, noise_mode="const"), G(z, noise_mode="const"), rtol=0, atol=0)
    torch.testing.assert_close(loaded.mapping.w_avg, G.mapping.w_avg, rtol=0, atol=0)
    assert loaded.rtil["cut_points"] == [1, 2]
    assert loaded.provenance["source"] == "test" and "created" in loaded.provenance
    # The raw weights are in the file too.
    raw_loaded = rtil.load_generator(path, weights="g")
    torch.testing.assert_close(raw_loaded(z, noise_mode="const"), raw.eval()(z, noise_mode="const"), rtol=0, atol=0)


def test_file_is_plain_weights_only_data(tmp_path):
    path = save_generator(tmp_path / "g.pt", tiny_stylegan2())
    rec = torch.load(path, weights_only=True)
    assert rec["format"] == "rtil-generator" and rec["family"] == "stylegan2"
    assert rec["arch"]["resolution"] == 16
    assert any(k.endswith("noise_const") for k in rec["g_ema"]) and "mapping.w_avg" in rec["g_ema"]


class _Exploit:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    torch.save({"g_ema": {"w": torch.zeros(1)}, "payload": _Exploit(marker)}, path)
    with pytest.raises(RtilError, match="arbitrary code"):
        rtil.load_generator(path)
    assert not marker.exists()
    plain = tmp_path / "evil.pkl"
    plain.write_bytes(pickle.dumps(_Exploit(marker)))
    with pytest.raises(RtilError):
        rtil.load_generator(plain)
    assert not marker.exists()


def test_foreign_and_broken_files_are_clear_errors(tmp_path):
    with pytest.raises(RtilError, match="not found"):
        rtil.load_generator(tmp_path / "missing.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"this is not a checkpoint")
    with pytest.raises(RtilError, match="not a readable"):
        rtil.load_generator(junk)
    ros = tmp_path / "ros.pt"
    torch.save({"g_ema": {"style.1.weight": torch.zeros(1)}, "latent_avg": torch.zeros(1)}, ros)
    with pytest.raises(RtilError, match="rosinality"):
        rtil.load_generator(ros)
    bad_version = tmp_path / "v9.pt"
    rec = torch.load(save_generator(tmp_path / "g.pt", tiny_stylegan2()), weights_only=True)
    torch.save({**rec, "version": 9}, bad_version)
    with pytest.raises(RtilError, match="version"):
        read_generator_file(bad_version)
    wrong_weights = tmp_path / "wrong.pt"
    torch.save({**rec, "g_ema": {"nope": torch.zeros(1)}}, wrong_weights)
    with pytest.raises(RtilError, match="do not fit .*, missing"):
        rtil.load_generator(wrong_weights)


def test_atomic_save_keeps_previous_file_when_writing_fails(tmp_path):
    path = tmp_path / "ckpt.pt"
    atomic_torch_save({"a": torch.ones(2)}, path)

    class Unsaveable:
        def __reduce__(self):
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        atomic_torch_save({"a": Unsaveable()}, path)
    assert torch.equal(torch.load(path, weights_only=True)["a"], torch.ones(2))
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]


def test_atomic_save_honours_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_torch_save({"x": torch.zeros(1)}, tmp_path / "a.pt")
        os.umask(0o077)
        atomic_torch_save({"x": torch.zeros(1)}, tmp_path / "b.pt")
    finally:
        os.umask(old)
    assert (tmp_path / "a.pt").stat().st_mode & 0o777 == 0o644  # colleagues can read it (mkstemp gave 0600)
    assert (tmp_path / "b.pt").stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]


def test_atomic_save_to_a_folder_or_an_unwritable_place_is_a_clear_error(tmp_path):
    with pytest.raises(RtilError, match="is a folder"):
        atomic_torch_save({"x": torch.zeros(1)}, tmp_path)
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions
            pytest.skip("this user can write anywhere")
        with pytest.raises(RtilError, match="cannot write"):
            atomic_torch_save({"x": torch.zeros(1)}, locked / "g.pt")
    finally:
        locked.chmod(0o700)


def test_safetensors_generator_files_round_trip_with_their_metadata(tmp_path):
    from safetensors import safe_open

    from rtil.checkpoints import load_generator

    torch.manual_seed(0)
    G = tiny_stylegan2(16, 1).eval()
    path = save_generator(tmp_path / "g.safetensors", G, rtil={"kind": "gaussian", "cut_points": [1], "sigma": 1.0},
                          provenance={"source": "test"})
    with safe_open(str(path), framework="pt") as f:  # a plain safetensors file any tool can read
        assert f.metadata()["format"] == '"rtil-generator"' and any(k.startswith("g_ema.") for k in f.keys())  # noqa: SIM118
    loaded = load_generator(path)
    z = torch.randn(3, G.z_dim)
    assert torch.equal(loaded(z, noise_mode="const"), G(z, noise_mode="const"))
    assert loaded.rtil == {"kind": "gaussian", "cut_points": [1], "sigma": 1.0}
    assert loaded.provenance["source"] == "test"
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(path.read_bytes()[:100])
    with pytest.raises(RtilError, match="not a readable safetensors generator file"):
        load_generator(broken)


def test_check_state_shapes_names_the_first_tensor_that_differs():
    from rtil.checkpoints import check_state_shapes

    expected = {"a.weight": torch.zeros(4, 3), "a.bias": torch.zeros(4)}
    check_state_shapes(expected, {"a.weight": torch.ones(4, 3), "a.bias": torch.ones(4)}, "model")
    with pytest.raises(RtilError, match=r"^model: tensor a.weight: expected shape \(4, 3\), found \(4, 2\) see X$"):
        check_state_shapes(expected, {"a.weight": torch.ones(4, 2), "a.bias": torch.ones(4)}, "model", " see X")
    with pytest.raises(RtilError, match=r"tensor a.bias: expected shape \(4\), missing \(1 more tensors differ\)"):
        check_state_shapes(expected, {"a.weight": torch.ones(4, 3), "b": torch.ones(1)}, "model")
    with pytest.raises(RtilError, match="unexpected tensor b"):
        check_state_shapes(expected, {**expected, "b": torch.ones(1)}, "model")


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_a_generator_file_with_wrongly_shaped_tensors_is_one_line_naming_the_tensor(tmp_path, suffix):
    from rtil.checkpoints import write_generator_record

    rec = torch.load(save_generator(tmp_path / "g.pt", tiny_stylegan2()), weights_only=True)
    name = next(k for k, v in rec["g_ema"].items() if v.ndim == 4)
    rec["g_ema"][name] = rec["g_ema"][name][:, :-1].clone()
    path = write_generator_record(rec, tmp_path / f"bad{suffix}")
    with pytest.raises(RtilError, match=rf"bad{suffix}: the 'g_ema' weights do not fit .*tensor {name}: expected shape"
                       ) as error:
        rtil.load_generator(path)
    assert "\n" not in str(error.value)
