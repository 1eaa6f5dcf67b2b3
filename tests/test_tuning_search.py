"""The study's tuning search (rtil.study.tuning): coordinate search over axes, lines that grow past an edge, notes
for an edge that cannot grow, and the tune stage asking for the extension once the synthetic results are in."""

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest

from rtil.errors import RtilError
from rtil.study.tuning import read_axes, search

COMMON = {"lr": [0.3, 0.05, 0.05], "l1_radius": [0.3, 0.15], "optimizer": "adam", "num_codes": 4}


def axes(*specs):
    return read_axes("ilo", list(specs), COMMON, "test")


def run_to_end(axes_, score):
    """Search until nothing is pending, scoring every asked candidate with score(settings); returns the final state
    and how many rounds it took."""
    done = {}
    for rounds in range(1, 100):
        state = search(axes_, COMMON, lambda s: done.get(repr(s)))
        if state.finished:
            return state, rounds
        for s in state.pending:
            done[repr(s)] = score(s)
    raise AssertionError("the search did not finish")


def peak_at(lr0, radius=0.3):
    """A smooth score with its maximum at lr[0] = lr0 and l1_radius[0] = radius."""
    return lambda s: -math.log(s["lr"][0] / lr0) ** 2 - math.log(s["l1_radius"][0] / radius) ** 2


def test_an_optimum_beyond_the_grid_makes_the_line_grow_until_the_best_is_inside():
    lr_axis = {"name": "round-0 lr", "key": "lr", "index": [0], "scale": [0.33, 1, 3], "extend": 3}
    state, _ = run_to_end(axes(lr_axis), peak_at(8.1))
    lrs = sorted({s["lr"][0] for s, _ in state.scored})
    assert lrs == [0.099, 0.3, 0.9, 2.7, 8.1, 24.3]  # grew twice past the top edge, once past the optimum
    assert state.chosen["lr"] == [8.1, 0.05, 0.05] and state.notes == []


def test_a_best_at_a_limit_is_kept_with_the_axis_reason():
    lr_axis = {"name": "round-0 lr", "key": "lr", "index": [0], "scale": [0.33, 1, 3], "extend": 3,
               "limit": [0.1, 3], "why": "larger steps diverge"}
    state, _ = run_to_end(axes(lr_axis), peak_at(50))
    assert state.chosen["lr"][0] == pytest.approx(0.9)
    assert len(state.notes) == 1 and "highest" in state.notes[0] and "larger steps diverge" in state.notes[0]


def test_a_line_that_keeps_improving_stops_after_the_maximum_number_of_extensions():
    from rtil.study.tuning import MAX_EXTENSIONS

    lr_axis = {"name": "round-0 lr", "key": "lr", "index": [0], "scale": [0.33, 1, 3], "extend": 3}
    state, _ = run_to_end(axes(lr_axis), lambda s: s["lr"][0])  # better without bound
    assert len({s["lr"][0] for s, _ in state.scored}) == 3 + MAX_EXTENSIONS
    assert state.chosen["lr"][0] == pytest.approx(0.3 * 3 ** (MAX_EXTENSIONS + 1))
    assert len(state.notes) == 1 and f"grew {MAX_EXTENSIONS} times" in state.notes[0]


def test_the_search_moves_along_every_axis_and_sweeps_again():
    state, rounds = run_to_end(axes({"name": "lr", "key": "lr", "index": [0], "scale": [0.5, 1, 2], "extend": 2},
                                    {"name": "radii", "key": "l1_radius", "scale": [0.5, 1, 2], "extend": 2}),
                               peak_at(1.2, 1.2))
    assert state.chosen["lr"][0] == pytest.approx(1.2) and state.chosen["l1_radius"] == [1.2, 0.6]
    assert len(state.scored) >= 8 and rounds >= 3


def test_categorical_and_integer_axes():
    codes = {"name": "codes", "key": "num_codes", "values": [2, 4, 8], "extend": 2, "limit": [1, 20],
             "why": "the paper's N"}
    opt = {"name": "optimizer", "values": [{}, {"optimizer": "sgd", "lr": [1.0, 1.0, 1.0]}]}
    score = lambda s: s["num_codes"] + (1 if s["optimizer"] == "sgd" else 0)  # noqa: E731
    state, _ = run_to_end(axes(codes, opt), score)
    assert state.chosen["num_codes"] == 20 and state.chosen["optimizer"] == "sgd"
    assert sorted({s["num_codes"] for s, _ in state.scored}) == [2, 4, 8, 16, 20]
    assert "the paper's N" in state.notes[0]


@pytest.mark.parametrize("spec, words", [
    ({"key": "lr", "scale": [0.5, 2]}, "pass through the common settings"),
    ({"key": "lr", "scale": [2, 1]}, "increasing order"),
    ({"key": "nope", "scale": [1, 2]}, "'key' 'nope' is not a setting"),
    ({"key": "num_codes", "values": [4, "8"]}, "must be of the type of its common value"),
    ({"key": "lr", "scale": [1, 2], "extend": 1}, "extend"),
    ({"key": "lr", "values": [1, 2], "scale": [1, 2]}, "exactly one"),
    ({"values": [{}, {"optimizer": "sgd"}], "extend": 2}, "only an axis of numbers"),
    ({"key": "lr", "scale": [1, 2], "bogus": 1}, "unknown key 'bogus'"),
])
def test_bad_axes_are_one_line_errors(spec, words):
    with pytest.raises(RtilError, match=words):
        axes(spec)


def test_the_tune_stage_asks_for_the_extension_after_synthetic_results(tmp_path):
    """A study whose ILO search's best candidate lies on the top edge of the round-0 lr line gets the next point
    of that line as a new tuning item; with the best inside, the search moves on and finally chooses it."""
    from rtil.study.cells import tune_items, tuned_settings
    from rtil.study.config_reading import read_study_config

    config = Path(__file__).resolve().parents[1] / "configs" / "study" / "digits_long.yaml"
    cfg = read_study_config(config, quick=True)
    cfg = replace(cfg, out=tmp_path)
    generator = next(g for g in cfg.generator_methods() if "ilo" in cfg.generator_methods()[g]
                     and cfg.generators[g].tune_from is None)
    lr_axis = cfg.tune.search["ilo"][0]
    assert lr_axis.key == "lr" and lr_axis.index == (0,)

    def fill(score):
        new = [i for i in tune_items(cfg) if not Path(i["path"]).is_file()]
        for item in new:
            Path(item["path"]).parent.mkdir(parents=True, exist_ok=True)
            Path(item["path"]).write_text(json.dumps({**item, "psnr": [score(item)], "ssim": [0.5],
                                                      "seconds": 1.0}))
        return new

    common = cfg.methods["ilo"].settings
    top = lr_axis.apply(common, lr_axis.points[-1])["lr"][0]  # the line's top edge
    peak = top * lr_axis.extend  # the optimum: one step past it

    def score(item):  # every other generator and method: flat
        if item["generator"] != generator or item["method"] != "ilo":
            return 0.0
        return -abs(math.log(item["settings"]["lr"][0] / peak))

    def ilo_items(items):
        return [i for i in items if i["generator"] == generator and i["method"] == "ilo"]

    first = ilo_items(fill(score))
    assert max(i["settings"]["lr"][0] for i in first) == pytest.approx(top)
    second = ilo_items(fill(score))
    assert [i["settings"]["lr"][0] for i in second] == [pytest.approx(peak)]  # the extension, nothing else
    for _ in range(30):  # the rest of the search (the other axes; then the pairs' cross runs)
        if not fill(score):
            break
    assert tuned_settings(cfg, generator, "ilo")[0]["lr"][0] == pytest.approx(peak)
