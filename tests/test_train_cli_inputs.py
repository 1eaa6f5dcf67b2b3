"""`train.py fit`: every numeric option of both training modules, the data module and rtil's callbacks declares its
valid range (the RANGES table of its class), and a value outside it is one error line and exit status 2 before
anything is built or trained; the classes refuse the same values when used from Python. The options are read from
the command's parser, so a new one cannot be forgotten. Lightning's own options (--trainer.*, --seed_everything) are
Lightning's to check and are left out."""

import functools
import inspect
import re
import types
import typing
from pathlib import Path

import pytest
import yaml
from test_train_cli import CONFIG, PGGAN_TINY, TINY

from rtil.training.base import GanModule
from rtil.training.cli import RtilCLI, build_cli, main, model_class

# The model classes' configs, with the tiny settings of tests/test_train_cli.py; a bad value that got through
# would train one iteration at most.
GUARD = ["--model.init_args.total_kimg", "0.004", "--trainer.max_steps", "2"]
MODEL_CONFIGS = [(CONFIG, TINY), (str(Path(CONFIG).with_name("pggan_digits.yaml")), PGGAN_TINY)]
# Set from --data.resolution and --data.channels (RtilCLI.add_arguments_to_parser), not options of their own.
LINK_TARGETS = {"model.init_args.resolution", "model.init_args.img_channels"}


class _ParserBuilt(Exception):
    pass


class _ParserOnly(RtilCLI):
    """The training CLI, stopped once its parsers are built (nothing parsed, nothing built)."""

    def parse_arguments(self, parser, args):
        raise _ParserBuilt(self._subcommand_parsers["fit"])


@functools.cache
def fit_parser():
    """The parser of `train.py fit`, exactly as `main` builds it."""
    try:
        build_cli([], _ParserOnly)
    except _ParserBuilt as built:
        return built.args[0]
    raise AssertionError("the CLI did not parse its arguments")


def is_numeric(hint) -> bool:
    """Whether an option's type takes a number: int, float, an optional or union of one, a tuple or list of them."""
    if hint in (int, float):
        return True
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(is_numeric(a) for a in args)
    return origin in (tuple, list) and any(a in (int, float) for a in args)


def typed_options(parser) -> list[tuple[str, object]]:
    """(name, type) of every option of a jsonargparse parser."""
    return [(action.dest, getattr(action, "_typehint", action.type)) for action in parser._actions]


@functools.cache
def numeric_options() -> tuple[list, list]:
    """The numeric options of `train.py fit` as (class, option, setting name, type, config args to run it with),
    and the numeric options that belong to no class (there should be none)."""
    from jsonargparse import ArgumentParser

    parser, found, unowned = fit_parser(), [], []
    for dest, hint in typed_options(parser):
        group = parser.groups.get(dest.partition(".")[0])
        if dest == "model":  # a class path: the options of each model class
            for config, tiny in MODEL_CONFIGS:
                cls = model_class(yaml.safe_load(Path(config).read_text())["model"]["class_path"])
                sub = ArgumentParser()
                sub.add_class_arguments(cls, "model.init_args")
                found += [(cls, option, option.rpartition(".")[2], h, ["--config", config, *tiny])
                          for option, h in typed_options(sub) if is_numeric(h)]
        elif dest.startswith("trainer.") or dest == "seed_everything" or not is_numeric(hint):
            continue
        elif getattr(group, "group_class", None) is not None:
            found.append((group.group_class, dest, dest.rpartition(".")[2], hint, ["--config", CONFIG, *TINY]))
        else:
            unowned.append(dest)
    return found, unowned


def test_every_numeric_option_of_train_fit_declares_its_range():
    from rtil.cli_checks import Ranged

    found, unowned = numeric_options()
    assert unowned == [], "numeric options outside any class: give each a class with a RANGES table"
    undeclared = [option for cls, option, name, *_ in found if name not in getattr(cls, "RANGES", {})]
    assert undeclared == [], "declare the valid range of these options in their class's RANGES"
    classes = {cls for cls, *_ in found}
    for cls in classes:  # no stale entry: every range is that of an init argument, and is a Ranged
        assert set(cls.RANGES) <= set(inspect.signature(cls.__init__).parameters), cls
        assert all(isinstance(r, Ranged) for r in cls.RANGES.values()), cls
    assert set(GanModule.__subclasses__()) <= classes, "every training module needs a config in MODEL_CONFIGS"
    assert len(found) >= 60


def outside(ranged) -> list[str]:
    """Values just outside a range and, for a float, NaN and infinity: as text (refused by the parser) and as YAML
    (.nan, .inf: floats the class itself must refuse)."""
    step = 1 if ranged.kind is int else 0.01
    values = []
    if ranged.low is not None:
        values.append(ranged.low if ranged.open_low else ranged.low - step)
    if ranged.high is not None:
        values.append(ranged.high if ranged.open_high else ranged.high + step)
    if ranged.kind is float:
        values += ["nan", "inf", ".nan", ".inf"]
    return [str(v) for v in values]


def as_option_value(value: str, hint) -> str:
    """`value` in the form of an option of type `hint`: [v, v] for a pair, [v] for a list."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = next(h for h in typing.get_args(hint) if h is not type(None))
    if typing.get_origin(hint) is tuple:
        return "[" + ", ".join([value] * len(typing.get_args(hint))) + "]"
    return f"[{value}]" if typing.get_origin(hint) is list else value


RANGED = [o for o in numeric_options()[0] if o[1] not in LINK_TARGETS]


@pytest.fixture(scope="module")
def parsers_built_once():
    """Every run of `main` in this module reuses the parsers built by the first: building them is most of the time
    of a run that stops at an option check (about 0.15 of 0.2 s); everything else runs as always."""
    built = {}
    setup_parser = RtilCLI.setup_parser

    def reuse(cli, *args):
        if not built:
            setup_parser(cli, *args)
            built.update({name: getattr(cli, name) for name in ("parser", "_subcommand_parsers",
                                                                 "_subcommand_method_arguments")})
        for name, value in built.items():
            setattr(cli, name, value)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(RtilCLI, "setup_parser", reuse)
        yield


@pytest.mark.parametrize("cls, option, name, hint, config", RANGED,
                         ids=[f"{cls.__name__}:{option}" for cls, option, *_ in RANGED])
def test_every_numeric_option_of_train_fit_refuses_values_outside_its_range(cls, option, name, hint, config, tmp_path,
                                                                           capsys, parsers_built_once):
    ranged = cls.RANGES[name]
    for value in outside(ranged):
        argv = ["fit", *config, *GUARD, "--trainer.default_root_dir", str(tmp_path), f"--{option}",
                as_option_value(value, hint)]
        capsys.readouterr()
        try:
            main(argv)
            status = 0
        except SystemExit as e:
            status = e.code
        err = capsys.readouterr().err.strip()
        last = err.splitlines()[-1] if err else ""
        assert status == 2 and "Traceback" not in err, (value, err)
        assert last.startswith("error: ") and re.search(rf"\b{re.escape(option)}\b", last), (value, err)
        if "Parser key" not in last:  # not refused by the parser as no number: the message says the valid range
            assert re.search(rf"{re.escape(option)} must (each )?be {re.escape(ranged.describe())},", last), last
    assert not any(tmp_path.iterdir()), "nothing is written before the options are checked"


CLASSES = sorted({cls for cls, *_ in numeric_options()[0]}, key=lambda cls: cls.__name__)


@pytest.mark.parametrize("cls", CLASSES, ids=[cls.__name__ for cls in CLASSES])
def test_the_classes_refuse_the_same_values_when_used_from_python(cls):
    from rtil.errors import RtilError

    hints = typing.get_type_hints(cls.__init__)
    for name, ranged in cls.RANGES.items():
        for value in outside(ranged):
            setting = yaml.safe_load(as_option_value(value, hints[name]))  # "nan" stays text: not a number
            with pytest.raises(RtilError, match=rf"\b{name} must (each )?be") as error:
                cls(**{name: setting})
            assert "\n" not in str(error.value)
