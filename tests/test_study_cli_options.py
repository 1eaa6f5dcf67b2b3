"""`python -m rtil study --only COMPARISONS --jobs N`: part of a study's work first, in another number of workers."""

from pathlib import Path

import pytest

from rtil.errors import RtilError
from rtil.study.config_reading import read_study_config
from rtil.study.runner import only_comparisons, run_study

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "study" / "digits_long.yaml"


def test_only_keeps_the_named_comparisons_and_their_snapshots():
    cfg = read_study_config(CONFIG, quick=True)
    kept = only_comparisons(cfg, ["stylegan2_same_start", "pggan_length"])
    assert set(kept.comparisons) == {"stylegan2_same_start", "pggan_length_0.032kimg", "pggan_length_0.064kimg"}
    assert set(kept.used_generators()) == {g for c in kept.comparisons.values() for g in c.generators}
    assert not any(g.startswith("stylegan2_rtil") for g in kept.used_generators())


def test_only_with_an_unknown_comparison_or_only_the_report_is_refused(tmp_path):
    cfg = read_study_config(CONFIG, quick=True)
    with pytest.raises(RtilError, match="no comparison 'nope'; the comparisons are"):
        only_comparisons(cfg, ["nope"])
    with pytest.raises(RtilError, match="the report needs every comparison"):
        run_study(CONFIG, quick=True, stages=["report"], only=["stylegan2_same_start"])
