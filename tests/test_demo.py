"""The README demo's first step (build, sample, export, reload) and the CLI's error handling."""

import pytest

from rtil.cli import main as cli_main
from rtil.demo import build_export_reload


def test_demo_models_step_round_trips(tmp_path):
    diffs = build_export_reload(tmp_path)
    assert diffs == {"stylegan2_digits": 0.0, "pggan_digits": 0.0}
    for stem in diffs:
        assert (tmp_path / f"untrained_{stem}_members.png").is_file()
        assert (tmp_path / f"untrained_{stem}.pt").is_file()


def test_cli_user_errors_exit_2(tmp_path, capsys):
    assert cli_main(["info", str(tmp_path / "missing.pt")]) == 2
    assert "not found" in capsys.readouterr().err
    assert cli_main(["export", str(tmp_path / "missing.ckpt"), str(tmp_path / "g.pt")]) == 2
    with pytest.raises(SystemExit) as exit_info:
        cli_main(["frobnicate"])
    assert exit_info.value.code == 2
