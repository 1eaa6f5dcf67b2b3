"""Building generators, discriminators and RTIL families from plain config dicts (YAML)."""

from pathlib import Path

import yaml

from rtil.errors import RtilError
from rtil.latents import DirichletFusion, GaussianLatents

FAMILIES = {"gaussian": GaussianLatents, "dirichlet": DirichletFusion}


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (PyYAML keeps the last one without a word)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} given twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def read_yaml_file(path: str | Path, empty_ok: bool = False) -> dict:
    """Parse a YAML file into a dict. A missing file, invalid YAML (one line with the file, line and column), a key
    given twice in one mapping or a top level that is not a mapping raises RtilError; an empty file is {} when
    `empty_ok`."""
    path = Path(path)
    if not path.is_file():
        raise RtilError(f"config file not found: {path}")
    try:
        data = yaml.load(path.read_text(), Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError as e:
        raise RtilError(f"{path} is not a text file ({e.reason} at byte {e.start}), so not a YAML config") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(getattr(e, "problem", None) or e).split())
        raise RtilError(f"{path}{where}: not valid YAML ({problem})") from None
    if data is None and empty_ok:
        return {}
    if not isinstance(data, dict):
        raise RtilError(f"{path} must hold a mapping at the top level")
    return data


read_yaml = read_yaml_file  # the earlier name, still used by callers


def build_family(config: dict | None):
    """An RTIL family object from {"kind": ..., **args}, or None for a vanilla config."""
    if config is None:
        return None
    args = dict(config)
    kind = args.pop("kind", None)
    if kind not in FAMILIES:
        raise RtilError(f"rtil.kind must be one of {', '.join(FAMILIES)}, got {kind!r}")
    try:
        return FAMILIES[kind](**args)
    except TypeError as e:
        raise RtilError(f"bad RTIL {kind} config {config}: {e}") from None


def build_generator(config: dict):
    """A generator from {"family": name, **constructor args}."""
    from rtil.models import GENERATORS

    args = dict(config)
    family = args.pop("family", None)
    if family not in GENERATORS:
        raise RtilError(f"generator.family must be one of {', '.join(GENERATORS)}, got {family!r}")
    try:
        return GENERATORS[family](**args)
    except TypeError as e:
        raise RtilError(f"bad {family} generator config: {e}") from None
