"""The study config's arms beyond one pair per generator: snapshots (a comparison's generators at several training
budgets: `snapshots`, `tune_at`, `quality_matched`), same-start generators (`init_from`: continue another
generator's checkpoint, `{generator, kimg}`, or a pretrained generator file, `{file}`) and continuations
(`continues`: a longer budget of a snapshot comparison, each arm continued from its own longest snapshot), checked
once when the config is read. A comparison with snapshots becomes one comparison per budget between snapshot
generators named `<generator>_<kimg>kimg`."""

from dataclasses import replace
from pathlib import Path

from rtil.errors import RtilError
from rtil.study.config import Comparison, Generator, short_hash

TUNE_AT = ("each", "longest")


def snapshot_name(name: str, kimg: float) -> str:
    return f"{name}_{kimg:g}kimg"


def training_lengths(changes: dict, settings: dict, train_kimg, where: str) -> tuple[float | None, float]:
    """(total kimg, checkpoint interval in kimg) of a generator, as train.py gets them from the study: its `set`,
    else the study's train_kimg (checkpoints at half of it), else its training config (else KimgCheckpoint's 10).
    Each must be a number > 0 (`where` names the generator)."""
    total = ((settings.get("model") or {}).get("init_args") or {}).get("total_kimg")
    every = (settings.get("checkpoint") or {}).get("every_kimg", 10.0)
    if train_kimg is not None:
        total, every = train_kimg, train_kimg / 2
    total = changes.get("model.init_args.total_kimg", total)
    every = changes.get("checkpoint.every_kimg", every)
    if total is not None:
        _kimg(total, f"{where}: its total_kimg (model.init_args.total_kimg of its `set`, train_kimg or its training "
                     f"config)")
    _kimg(every, f"{where}: its checkpoint interval (checkpoint.every_kimg of its `set`, half of train_kimg or its "
                 f"training config's)")
    return (None if total is None else float(total)), float(every)


def check_checkpoint(source: Generator, kimg: float, what: str) -> None:
    """A generator trained as `source` is configured to have a checkpoint within one interval at or below `kimg`
    (one every checkpoint_kimg, and one at its end), which snapshots and init_from start from."""
    at_end = source.total_kimg is not None and abs(kimg - source.total_kimg) < 1e-9
    if kimg < source.checkpoint_kimg - 1e-9 and not at_end:
        end = f" and at its end ({source.total_kimg:g} kimg)" if source.total_kimg is not None else ""
        raise RtilError(f"{what}: {kimg:g} kimg is before the generator's first checkpoint: it writes one every "
                        f"{source.checkpoint_kimg:g} kimg (checkpoint.every_kimg){end}")


def read_init_from(spec, name: str, generators: dict, where: str, base=None) -> dict:
    """{generator, kimg}: a generator defined before this one (and not itself a continuation's snapshot) and a
    budget it reaches and has a checkpoint at; or {file}: a pretrained generator file (read_init_file; `base`: the
    config's folder, for a relative path)."""
    if isinstance(spec, dict) and set(spec) == {"file"}:
        return read_init_file(spec["file"], name, where, base)
    if not isinstance(spec, dict) or set(spec) != {"generator", "kimg"}:
        raise RtilError(f"{where}: generator {name!r}: init_from needs exactly 'generator' (one defined above it) "
                        f"and 'kimg' (the budget of its checkpoint to start from), or only 'file' (a pretrained "
                        f"generator file), got {spec!r}")
    if not isinstance(spec["generator"], str):
        raise RtilError(f"{where}: generators.{name}.init_from.generator must be a generator's name, got "
                        f"{spec['generator']!r}")
    source = generators.get(spec["generator"])
    if source is None:
        raise RtilError(f"{where}: generator {name!r} starts from {spec['generator']!r}, which is not a generator "
                        f"defined above it")
    kimg = _kimg(spec["kimg"], f"{where}: generator {name!r}: init_from kimg")
    if source.total_kimg is not None and kimg > source.total_kimg:
        raise RtilError(f"{where}: generator {name!r} starts from {spec['generator']!r} at {kimg:g} kimg, but that "
                        f"generator trains only {source.total_kimg:g} kimg")
    check_checkpoint(source, kimg, f"{where}: generators.{name}.init_from.kimg: {spec['generator']!r}")
    return {"generator": spec["generator"], "kimg": kimg}


def read_init_file(file, name: str, where: str, base) -> dict:
    """{file, sha256}: a generator file train.py --init_from reads (rtil/training/init_from.py: ours, rosinality,
    NVlabs .pkl, the RTIL authors' PGGAN), resolved like the config's other paths. Its SHA-256 goes into the
    generator's fingerprint, so a changed file is refused like a changed setting."""
    from rtil.importers.common import sha256
    from rtil.inverse.sweep import resolve_config_path

    if not isinstance(file, str) or not file:
        raise RtilError(f"{where}: generators.{name}.init_from.file must be the path of a generator file, got {file!r}")
    path = resolve_config_path(file, base) if base is not None else Path(file)
    if not path.is_file():
        raise RtilError(f"{where}: generators.{name}.init_from.file: no such file {path}")
    return {"file": str(path.resolve()), "sha256": sha256(path)}


def init_file_changed(init_from: dict) -> str | None:
    """Why an init_from file no longer is the file the config was read with (None when it is)."""
    from rtil.importers.common import sha256

    path = Path(init_from["file"])
    if not path.is_file():
        return f"{path} no longer exists"
    if sha256(path) != init_from["sha256"]:
        return f"{path} changed since the study config was read (its SHA-256 differs)"
    return None


def _kimg(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < float("inf"):
        raise RtilError(f"{what} must be a number of kimg > 0, got {value!r}")
    return float(value)


def expand_snapshots(name: str, c: dict, comparison: Comparison, generators: dict,
                     where: str) -> dict[str, Comparison]:
    """The comparison itself, or (with `snapshots`) one comparison per budget between snapshot generators, which
    are added to `generators`."""
    snapshots, tune_at = c.get("snapshots"), c.get("tune_at", "each")
    if tune_at not in TUNE_AT:
        raise RtilError(f"{where}: comparison {name!r}: tune_at takes {' or '.join(TUNE_AT)}, got {tune_at!r}")
    if snapshots is None:
        if "tune_at" in c or c.get("quality_matched"):
            raise RtilError(f"{where}: comparison {name!r}: tune_at and quality_matched need 'snapshots'")
        return {name: comparison}
    if not isinstance(snapshots, list) or not snapshots:
        raise RtilError(f"{where}: comparison {name!r}: snapshots must be a list of kimg, e.g. [10, 20, 40, 80]")
    budgets = sorted({_kimg(k, f"{where}: comparisons.{name}.snapshots: a snapshot") for k in snapshots})
    if not isinstance(c.get("quality_matched", False), bool):
        raise RtilError(f"{where}: comparison {name!r}: quality_matched takes true or false")
    for g in comparison.generators:
        total = generators[g].total_kimg
        if generators[g].source is not None:
            raise RtilError(f"{where}: comparison {name!r} takes snapshots of {g!r}, itself a snapshot")
        if total is not None and budgets[-1] > total:
            raise RtilError(f"{where}: comparison {name!r}: snapshot {budgets[-1]:g} kimg is beyond generator {g!r}'s "
                            f"training ({total:g} kimg)")
        check_checkpoint(generators[g], budgets[0], f"{where}: comparisons.{name}.snapshots: {g!r}")
    out = {}
    for kimg in budgets:
        for g in comparison.generators:
            own = snapshot_name(g, kimg)
            longest = snapshot_name(g, budgets[-1])
            snapshot = replace(generators[g], fingerprint=short_hash([generators[g].fingerprint, "snapshot", kimg]),
                               total_kimg=kimg, source=g, kimg=kimg, init_from=None,
                               tune_from=longest if tune_at == "longest" and own != longest else None)
            if own in generators and generators[own] != snapshot:
                raise RtilError(f"{where}: comparison {name!r}: its snapshot {own!r} is also a generator of the config "
                                f"(or another comparison's snapshot with other settings); rename that generator")
            generators[own] = snapshot
        out[snapshot_name(name, kimg)] = replace(
            comparison, title=f"{comparison.title}, at {kimg:g} kimg",
            baseline=[snapshot_name(g, kimg) for g in comparison.baseline],
            treatment=[snapshot_name(g, kimg) for g in comparison.treatment], group=name, kimg=kimg,
            tune_at=tune_at, quality_matched=bool(c.get("quality_matched", False)))
    return out


def check_same_start(name: str, comparison: Comparison, generators: dict[str, Generator], where: str) -> None:
    """A pair with a continued generator must start both arms from the same checkpoint with the same seed."""
    for b, t in zip(comparison.baseline, comparison.treatment, strict=True):
        gb, gt = generators[b], generators[t]
        if (gb.init_from or gt.init_from) and (gb.init_from != gt.init_from or gb.seed != gt.seed):
            raise RtilError(f"{where}: comparison {name!r} pairs {b!r} with {t!r}: a same-start pair must continue "
                            f"the same generator's checkpoint (init_from) with the same seed")


def read_continuation(name: str, c: dict, comparison: Comparison, comparisons: dict, generators: dict,
                      where: str) -> Comparison:
    """`continues: <comparison with snapshots>`: one more budget of that comparison, for when its longest snapshot is
    not yet enough. Each generator continues the group's generator of the same arm and pair (`init_from` its
    checkpoint at one kimg K, both arms alike, trained T more kimg): the point joins the group at K + T kimg. With
    the group's `tune_at: longest` its generators take the settings tuned at the group's longest snapshot."""
    group = c["continues"]
    longest = max((other for other in comparisons.values() if other.group == group and other.kimg is not None
                   and other.continued_from is None), key=lambda other: other.kimg, default=None)
    if longest is None:
        raise RtilError(f"{where}: comparison {name!r} continues {group!r}, which is not a comparison with "
                        f"'snapshots' defined above it")
    for key in ("snapshots", "tune_at", "quality_matched"):
        if key in c:
            raise RtilError(f"{where}: comparison {name!r}: {key} comes from {group!r}, which it continues")
    starts, lengths = set(), set()
    for arm in ("baseline", "treatment"):
        own, theirs = getattr(comparison, arm), [generators[g].source for g in getattr(longest, arm)]
        if len(own) != len(theirs):
            raise RtilError(f"{where}: comparison {name!r} needs one {arm} generator per pair of {group!r} "
                            f"({len(theirs)}), got {len(own)}")
        for g, source in zip(own, theirs, strict=True):
            start = generators[g].init_from
            if start is None or start.get("generator") != source or generators[g].seed != generators[source].seed:
                raise RtilError(f"{where}: comparison {name!r}: {arm} generator {g!r} must continue {source!r} "
                                f"(init_from: {{generator: {source}, kimg: ...}}) with its seed")
            starts.add(start["kimg"])
            lengths.add(generators[g].total_kimg)
    if len(starts) != 1 or len(lengths) != 1 or None in lengths:
        raise RtilError(f"{where}: comparison {name!r}: every generator must continue from the same kimg and train the "
                        f"same total_kimg (got init_from kimg {sorted(starts)}, total_kimg {sorted(lengths, key=str)})")
    start = starts.pop()
    kimg = start + lengths.pop()
    if kimg <= longest.kimg:
        raise RtilError(f"{where}: comparison {name!r} ends at {kimg:g} kimg, not beyond the longest snapshot "
                        f"of {group!r} ({longest.kimg:g} kimg)")
    if longest.tune_at == "longest":  # the group's settings stay those tuned at its longest snapshot
        for arm in ("baseline", "treatment"):
            for g, snapshot in zip(getattr(comparison, arm), getattr(longest, arm), strict=True):
                generators[g] = replace(generators[g], tune_from=snapshot)
    return replace(comparison, title=f"{longest.group_title}, at {kimg:g} kimg", group=group, kimg=kimg,
                   tune_at=longest.tune_at, quality_matched=longest.quality_matched, continued_from=start)
