"""The training modules' `rtil` setting: the RTIL family in the nested form of the model configs
(configs/models/*.yaml) and of exported generator files (the families' `to_config()`):

    rtil: {kind: gaussian, cut_points: [1, 2, 3], sigma: 1.0}        # StyleGAN2Module
    rtil: {kind: dirichlet, codes_per_member: [4, 8], cut_point: 3}  # PGGANModule
    rtil: null                                                       # vanilla (also: an empty member list)

On the command line: `--model.init_args.rtil '{kind: gaussian, cut_points: [1, 2]}'` or
`--model.init_args.rtil null`. The flat keys of earlier releases (rtil_cut_points / rtil_sigma,
rtil_codes_per_member / rtil_cut_point) are still accepted for one release: they are translated to
the nested form (overriding the matching keys of `rtil`) with a DeprecationWarning naming it.
"""

import warnings

from rtil.config import build_family
from rtil.errors import RtilError

# flat key of earlier releases -> (family kind, nested key)
FLAT_KEYS = {"rtil_cut_points": ("gaussian", "cut_points"), "rtil_sigma": ("gaussian", "sigma"),
             "rtil_codes_per_member": ("dirichlet", "codes_per_member"), "rtil_cut_point": ("dirichlet", "cut_point")}
# the key listing the extended members G1..GK of each kind (empty: vanilla)
MEMBERS_KEY = {"gaussian": "cut_points", "dirichlet": "codes_per_member"}


def rtil_config(rtil, kind: str, flat: dict | None = None, warn: bool = True) -> dict | None:
    """The family's normalised nested config (its `to_config()`), or None for vanilla training.

    `rtil` is the nested setting (a mapping, `kind` defaulting to `kind`, or None); `flat` holds the
    deprecated flat keys (None = not given). Raises RtilError for a value that is not a family of `kind`.
    """
    given = {k: v for k, v in (flat or {}).items() if v is not None}
    if rtil is not None and not isinstance(rtil, dict):
        raise RtilError(f"rtil must be a mapping such as {{kind: {kind}, {MEMBERS_KEY[kind]}: [...]}} or null "
                        f"(vanilla), got {rtil!r}")
    config = None if rtil is None else {"kind": kind, **rtil}
    if given:
        unknown = sorted(k for k in given if FLAT_KEYS.get(k, (None,))[0] != kind)
        if unknown:
            raise RtilError(f"{', '.join(unknown)}: not settings of the {kind} RTIL family")
        base = config if config is not None and config["kind"] == kind else {"kind": kind}
        config = {**base, **{FLAT_KEYS[k][1]: v for k, v in given.items()}}
        if MEMBERS_KEY[kind] not in config:  # e.g. only rtil_sigma: vanilla, as before
            config = None
    result = _normalise(config, kind)
    if given and warn:
        warnings.warn(f"{', '.join(sorted(given))}: deprecated, to be removed in the next release; use the nested "
                      f"key `rtil: {_flow(result)}` instead (on the command line: --model.init_args.rtil "
                      f"'{_flow(result)}')", DeprecationWarning, stacklevel=3)  # points at the module's caller
    return result


def _normalise(config: dict | None, kind: str) -> dict | None:
    if config is None:
        return None
    if config["kind"] != kind:
        raise RtilError(f"this training module trains the {kind} RTIL family: rtil.kind must be {kind!r}, "
                        f"got {config['kind']!r}")
    if MEMBERS_KEY[kind] in config and not config[MEMBERS_KEY[kind]]:
        return None  # no extended members: vanilla
    return build_family(config).to_config()


def normalise_settings(settings: dict, kind: str) -> dict:
    """Model settings (a module's init arguments or a checkpoint's hyper-parameters) with the flat keys folded
    into `rtil` (normalised, without warnings): what a resume compares."""
    out = {k: v for k, v in settings.items() if k not in FLAT_KEYS}
    flat = {k: v for k, v in settings.items() if k in FLAT_KEYS}
    out["rtil"] = rtil_config(settings.get("rtil"), kind, flat, warn=False)
    return out


def _flow(config: dict | None) -> str:
    if config is None:
        return "null"
    return "{" + ", ".join(f"{k}: {v}" for k, v in config.items()) + "}"
