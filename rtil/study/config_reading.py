"""Reading the study config file (configs/study/digits.yaml documents the format): defaults, the `quick` changes of
--quick, every entry checked before any work starts, and the generators' fingerprints; gives a StudyConfig."""

import json
from pathlib import Path

from rtil.cli_checks import SEED_RANGE, Ranged
from rtil.config import read_yaml_file
from rtil.errors import RtilError
from rtil.study.budgets import read_budgets
from rtil.study.config import (
    SETTINGS_KINDS,
    Comparison,
    Evaluation,
    Generator,
    Images,
    Method,
    StudyConfig,
    Tuning,
    short_hash,
)
from rtil.study.config_arms import (
    check_same_start,
    expand_snapshots,
    read_continuation,
    read_init_from,
    training_lengths,
)
from rtil.study.config_checks import (
    check_known_keys,
    check_outputs,
    check_task,
    check_training_changes,
    image_files,
    image_range,
    number,
    option,
    strings,
    typed,
)
from rtil.study.protocols import read_protocols
from rtil.study.tuning import read_search


def deep_merge(base: dict, changes: dict) -> dict:
    """base with changes applied: mappings merge key by key, any other value replaces."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


# every key the reader takes (a method also takes its solver's settings)
TOP_LEVEL = ("out", "report", "jobs", "holdout", "train_kimg", "fdd_samples", "fid_samples", "claims", "device",
             "generators", "comparisons", "methods", "tune", "evaluate", "quick")
GENERATOR_KEYS = ("config", "seed", "set", "init_from")
METHOD_KEYS = ("file", "solver", "description")
COMPARISON_KEYS = ("title", "labels", "baseline", "treatment", "methods", "tasks", "settings", "snapshots", "tune_at",
                   "quality_matched", "continues", "budgets", "protocols")
TUNE_KEYS = ("images", "task", "param", "batch_size", "grids", "search")
EVALUATE_KEYS = ("images", "batch_size", "seed", "settings", "common_tasks", "tasks")
POSITIVE_KIMG = Ranged(float, 0, open_low=True)


def read_study_config(path: str | Path, quick: bool = False) -> StudyConfig:
    """The study config (with its `quick` changes applied if quick), every entry checked before any work: the
    type and range of every value, names that must match, image ranges, and outputs that must not replace a file
    the study did not write (config_checks.check_outputs)."""
    from rtil.data.digits import HOLDOUT_RANGE

    path = Path(path)
    raw = read_yaml_file(path)
    check_known_keys(raw, TOP_LEVEL, f"{path}", "the top level")
    if "quick" in raw:
        if not isinstance(raw["quick"], dict):
            raise RtilError(f"{path}: 'quick' must be a mapping of changes to the config")
        check_known_keys(raw["quick"], TOP_LEVEL[:-1], f"{path}", "'quick'")
    if quick:
        if not isinstance(raw.get("quick"), dict):
            raise RtilError(f"{path}: --quick needs a 'quick' mapping of changes in the config")
        raw = deep_merge(raw, raw["quick"])
    raw.pop("quick", None)
    where = f"{path} (with its quick changes)" if quick else f"{path}"
    base = path.resolve().parent
    for key in ("out", "generators", "comparisons", "methods", "tune", "evaluate"):
        if raw.get(key) is None:
            raise RtilError(f"{where}: missing '{key}'")
    out = Path(typed(raw["out"], str, "out", where))
    if out.exists() and not out.is_dir():
        raise RtilError(f"{where}: out {out} is a file; give a folder (existing or new) for the study's outputs")
    train_kimg = raw.get("train_kimg")
    if train_kimg is not None:
        number(train_kimg, POSITIVE_KIMG, "train_kimg", where)
    top = {"path": str(path), "quick": quick, "out": out,
           "jobs": number(option(raw, "jobs", 1), Ranged(int, 1), "jobs", where),
           "holdout": number(option(raw, "holdout", 0), HOLDOUT_RANGE, "holdout", where), "train_kimg": train_kimg,
           "report": Path(typed(raw["report"], str, "report", where)) if raw.get("report") else out / "report.md",
           "claims": typed(option(raw, "claims", ""), str, "claims", where),
           "device": read_device(option(raw, "device", "auto"), where)}
    generators = read_generators(raw["generators"], where, base, top["holdout"], train_kimg)
    top["fdd_samples"] = read_fdd_samples(raw, generators, where)
    top["fid_samples"] = read_fid_samples(raw, generators, quick, where)
    methods, method_files = read_methods(raw["methods"], where, base)
    tasks, tune_raw, evaluate_raw = read_tasks(raw, where)
    comparisons = read_comparisons(raw["comparisons"], where, generators, methods, tasks, evaluate_raw)
    grids = typed(option(tune_raw, "grids", {}), dict, "tune.grids", where)
    for method, grid in grids.items():
        if method not in methods:
            raise RtilError(f"{where}: tune.grids names method {method!r}, which 'methods' does not define")
        if not isinstance(grid, list) or not all(isinstance(change, dict) for change in grid):
            raise RtilError(f"{where}: tune.grids.{method} must be a list of changes to the method's settings "
                            f"(mappings, e.g. [{{}}, {{lr: 0.05}}]), got {grid!r}")
        for i, change in enumerate(grid):
            build_solver(methods[method].solver, {**methods[method].settings, **change}, f"tune.grids.{method}[{i}]",
                         where)
    search = read_search(tune_raw.get("search"), methods, grids, where)
    tune = Tuning(task=tune_raw["task"], param=tune_raw["param"], grids=grids, search=search,
                  images=Images(**image_range(tune_raw.get("images"), "validation", where, "tune.images", base,
                                              top["holdout"])),
                  batch_size=number(option(tune_raw, "batch_size", 16), Ranged(int, 1), "tune.batch_size", where))
    settings = strings(option(evaluate_raw, "settings", list(SETTINGS_KINDS)), "evaluate.settings", where)
    common_tasks = strings(option(evaluate_raw, "common_tasks", list(tasks)), "evaluate.common_tasks", where)
    evaluate = Evaluation(tasks=tasks, images=Images(**image_range(evaluate_raw.get("images"), "test", where,
                                                                   "evaluate.images", base, top["holdout"])),
                          batch_size=number(option(evaluate_raw, "batch_size", 16), Ranged(int, 1),
                                            "evaluate.batch_size", where),
                          seed=number(option(evaluate_raw, "seed", 0), SEED_RANGE, "evaluate.seed", where),
                          settings=list(settings or SETTINGS_KINDS), common_tasks=list(common_tasks or tasks))
    for kind in evaluate.settings:
        if kind not in SETTINGS_KINDS:
            raise RtilError(f"{where}: evaluate.settings take 'tuned' and/or 'common', got {kind!r}")
    for task in evaluate.common_tasks:
        if task not in tasks:
            raise RtilError(f"{where}: evaluate.common_tasks names task {task!r}, which evaluate.tasks does not list")
    shared = image_files(tune.images.as_dict()) & image_files(evaluate.images.as_dict())
    if shared:
        raise RtilError(f"{where}: the validation images overlap the test images ({len(shared)} shared, e.g. "
                        f"{sorted(shared)[0]}); tune on images the evaluation never sees")
    cfg = StudyConfig(**top, generators=generators, methods=methods, comparisons=comparisons, tune=tune,
                      evaluate=evaluate)
    inputs = [path, *{Path(g.config) for g in generators.values()}, *method_files,
              *{Path(g.init_from["file"]) for g in generators.values() if g.init_from and "file" in g.init_from},
              *{Path(data["path"]) for data in map(generator_data, generators.values())
                if data.get("dataset") == "folder" and data.get("path")},
              *[Path(i.folder) for i in (tune.images, evaluate.images) if i.folder is not None]]
    check_outputs(cfg, inputs, where)
    return cfg


def generator_data(g: Generator) -> dict:
    """The data section a generator trains with: its training config's, with its `set` changes (data.*)."""
    data = dict(read_yaml_file(Path(g.config)).get("data") or {})
    data.update({key.split(".", 1)[1]: value for key, value in g.set.items() if key.startswith("data.")})
    return data


def trains_on_digits(generators: dict) -> bool:
    """Whether every generator trains on the built-in digits (GanDataModule's default data set), the only data the
    Fréchet digits distance (FDD) is a sample quality for."""
    return all(generator_data(g).get("dataset", "digits") == "digits" for g in generators.values())


def read_fdd_samples(raw: dict, generators: dict, where: str) -> int:
    """fdd_samples: 0 (no FDD) or >= 2; by default 1000 when every generator trains on the digits, else 0. FDD
    compares samples with the digits, so generators trained on other data are refused a positive value."""
    digits = trains_on_digits(generators)
    fdd_samples = number(option(raw, "fdd_samples", 1000 if digits else 0), Ranged(int, 0), "fdd_samples", where)
    if fdd_samples == 1:
        raise RtilError(f"{where}: fdd_samples must be 0 (no FDD) or at least 2 (a covariance needs two samples)")
    if fdd_samples and not digits:
        name = next(n for n, g in generators.items() if generator_data(g).get("dataset", "digits") != "digits")
        raise RtilError(f"{where}: fdd_samples {fdd_samples}: the Fréchet digits distance compares samples with the "
                        f"built-in digits, but generator {name!r} trains on other data; set fdd_samples: 0")
    return fdd_samples


FID_SAMPLES = 1000  # the default of a study on other data than the digits
QUICK_FID_SAMPLES = 16  # and with --quick (a pipeline check)


def read_fid_samples(raw: dict, generators: dict, quick: bool, where: str) -> int:
    """fid_samples: generated images per member for FID and KID against the test images (the export stage; 0:
    none, else >= 2); by default 0 when every generator trains on the digits (their sample quality is the FDD),
    else FID_SAMPLES (QUICK_FID_SAMPLES with --quick)."""
    default = 0 if trains_on_digits(generators) else QUICK_FID_SAMPLES if quick else FID_SAMPLES
    fid_samples = number(option(raw, "fid_samples", default), Ranged(int, 0), "fid_samples", where)
    if fid_samples == 1:
        raise RtilError(f"{where}: fid_samples must be 0 (no FID/KID) or at least 2 (a covariance needs two images)")
    return fid_samples


def read_device(device, where: str) -> str:
    """'auto' (a GPU when there is one) or a name torch knows as a device."""
    import torch

    if typed(device, str, "device", where) == "auto":
        return device
    try:
        torch.device(device)
    except RuntimeError:
        raise RtilError(f"{where}: device {device!r} is not 'auto' nor a torch device (e.g. cpu, cuda, cuda:1, "
                        f"mps)") from None
    return device


def read_generators(raw, where: str, base: Path, holdout: int, train_kimg) -> dict[str, Generator]:
    from rtil.inverse.sweep import resolve_config_path

    generators = {}
    for name, g in typed(raw, dict, "generators", where).items():
        if not isinstance(g, dict) or "config" not in g:
            raise RtilError(f"{where}: generator {name!r} needs a 'config' (a training config file)")
        check_known_keys(g, GENERATOR_KEYS, where, f"generator {name!r}")
        config = resolve_config_path(typed(g["config"], str, f"generators.{name}.config", where), base)
        train_cfg = read_yaml_file(config)
        changes = option(g, "set", {})
        check_training_changes(changes, train_cfg, f"{where}: generator {name!r}", config)
        generator_holdout = changes.get("data.holdout", (train_cfg.get("data") or {}).get("holdout", 0))
        if generator_holdout != holdout:
            raise RtilError(f"{where}: generator {name!r} trains with data.holdout {generator_holdout}, but the "
                            f"study's validation split needs holdout {holdout} (the validation digits must be left "
                            f"out of training)")
        seed = number(option(g, "seed", 0), SEED_RANGE, f"generators.{name}.seed", where)
        settings = training_settings(train_cfg, changes)
        total, every = training_lengths(changes, settings, train_kimg, f"{where}: generator {name!r}")
        identity = [settings, seed, train_kimg]
        init_from = read_init_from(g["init_from"], name, generators, where, base) if "init_from" in g else None
        if init_from is not None and "file" in init_from:  # and the file it starts from (its content, not its path)
            check_init_file(init_from["file"], settings, f"{where}: generators.{name}.init_from.file")
            identity.append({"init_from_file": init_from["sha256"]})
        elif init_from is not None:  # and the checkpoint it starts from
            identity.append({"init_from": generators[init_from["generator"]].fingerprint, "kimg": init_from["kimg"]})
        generators[name] = Generator(config=str(config), seed=seed, set=changes, fingerprint=short_hash(identity),
                                     members_per_step=members_per_step(settings), total_kimg=total,
                                     checkpoint_kimg=every, init_from=init_from)
    if not generators:
        raise RtilError(f"{where}: generators is empty; define the generators the comparisons name")
    return generators


def check_init_file(path: str, settings: dict, where: str) -> None:
    """The generator file a generator starts from is one train.py --init_from reads (weights-only, or NVlabs' pickle
    without running its code) and has the training config's family, resolution and channels (train.py checks
    every tensor when it starts)."""
    from rtil.training.init_from import read_init_source

    try:
        src = read_init_source(path)
    except RtilError as e:
        raise RtilError(f"{where}: {str(e).removeprefix('--init_from ')}") from None
    model = str((settings.get("model") or {}).get("class_path")).split(".")[-1]
    family = {"StyleGAN2Module": "stylegan2", "PGGANModule": "pggan"}.get(model)
    data = settings.get("data") or {}
    if family is not None and src.family != family:
        raise RtilError(f"{where}: {path} holds a {src.family} generator, but the training config trains a {family} "
                        f"({model})")
    for key, arch_key in (("resolution", "resolution"), ("channels", "img_channels")):
        if key in data and arch_key in src.arch and data[key] != src.arch[arch_key]:
            raise RtilError(f"{where}: {path} makes {src.arch[arch_key]} as {key}, but the training config trains "
                            f"at data.{key} {data[key]} (set data.{key}: {src.arch[arch_key]})")


def read_methods(raw, where: str, base: Path) -> tuple[dict[str, Method], list[Path]]:
    """Each method's solver and common settings (a settings file and changes to it), checked by building it; and
    the settings files read."""
    from rtil.inverse.run import SOLVERS, load_settings
    from rtil.inverse.sweep import resolve_config_path

    methods, files = {}, []
    for name, m in typed(raw, dict, "methods", where).items():
        m = {} if m is None else dict(typed(m, dict, f"methods.{name}", where))
        for key in METHOD_KEYS:
            if key in m:
                typed(m[key], str, f"methods.{name}.{key}", where)
        settings = {}
        if "file" in m:
            files.append(resolve_config_path(m.pop("file"), base))
            try:
                settings = load_settings(files[-1])
            except RtilError as e:
                raise RtilError(f"{where}: methods.{name}.file: {e}") from None
        solver = m.pop("solver", name)
        description = m.pop("description", "")
        settings = {**settings, **m}
        settings.pop("method", None)
        if solver not in SOLVERS:
            raise RtilError(f"{where}: method {name!r}: unknown solver {solver!r}; choose from {', '.join(SOLVERS)} "
                            f"(a method is named after its solver, or names it with `solver:`)")
        build_solver(solver, settings, f"methods.{name}", where)
        methods[name] = Method(solver=solver, settings=settings, description=description)
    return methods, files


def build_solver(solver: str, settings: dict, what: str, where: str) -> None:
    """Build the solver with `settings` (which checks them); an error names the first setting that the solver
    refuses on its own, else `what` (e.g. methods.ilo)."""
    from rtil.inverse.run import make_solver

    try:
        make_solver(solver, settings)
    except RtilError as e:
        for key, value in settings.items():
            try:
                make_solver(solver, {key: value})
            except RtilError as alone:
                raise RtilError(f"{where}: {what}, setting {key!r}: {alone}") from None
        raise RtilError(f"{where}: {what}: {e}") from None


def read_tasks(raw: dict, where: str) -> tuple[dict, dict, dict]:
    """evaluate.tasks (checked, with tune's task) and the tune and evaluate mappings."""
    evaluate, tune = raw["evaluate"], raw["tune"]
    check_known_keys(evaluate, EVALUATE_KEYS, where, "evaluate")
    check_known_keys(tune, TUNE_KEYS, where, "tune")
    tasks = evaluate.get("tasks") or {}
    if not isinstance(tasks, dict) or not tasks:
        raise RtilError(f"{where}: evaluate.tasks must map tasks to lists of parameters")
    for task, params in tasks.items():
        check_task(task, params, "evaluate.tasks", f"evaluate.tasks.{task}", where)
    for key in ("task", "param"):
        if tune.get(key) is None:
            raise RtilError(f"{where}: missing tune.{key} (the task and parameter the settings are tuned on)")
    check_task(tune["task"], [tune["param"]], "tune.task", "tune.param", where)
    return tasks, tune, evaluate


def read_comparisons(raw, where: str, generators: dict, methods: dict, tasks: dict,
                     evaluate: dict) -> dict[str, Comparison]:
    comparisons = {}
    for name, c in typed(raw, dict, "comparisons", where).items():
        check_known_keys(c, COMPARISON_KEYS, where, f"comparison {name!r}")
        key = f"comparisons.{name}"
        for part in ("baseline", "treatment", "methods"):
            if not isinstance(c.get(part), list) or not c[part]:
                raise RtilError(f"{where}: comparison {name!r} needs a non-empty list '{part}'")
            strings(c[part], f"{key}.{part}", where)
        if len(c["baseline"]) != len(c["treatment"]):
            raise RtilError(f"{where}: comparison {name!r} pairs baseline[i] with treatment[i]: the lists must have "
                            f"the same length")
        for g in c["baseline"] + c["treatment"]:
            if g not in generators:
                raise RtilError(f"{where}: comparison {name!r} names generator {g!r}, which 'generators' does not "
                                f"define")
        for m in c["methods"]:
            if m not in methods:
                raise RtilError(f"{where}: comparison {name!r} names method {m!r}, which 'methods' does not define")
        own_tasks = strings(option(c, "tasks", []), f"{key}.tasks", where) or list(tasks)
        for t in own_tasks:
            if t not in tasks:
                raise RtilError(f"{where}: comparison {name!r} names task {t!r}, which evaluate.tasks does not list")
        own_settings = (strings(option(c, "settings", []), f"{key}.settings", where)
                        or strings(option(evaluate, "settings", []), "evaluate.settings", where)
                        or list(SETTINGS_KINDS))
        for kind in own_settings:
            if kind not in SETTINGS_KINDS:
                raise RtilError(f"{where}: evaluate.settings (or a comparison's settings) take 'tuned' and/or "
                                f"'common', got {kind!r}")
        labels = strings(option(c, "labels", ["baseline", "treatment"]), f"{key}.labels", where)
        if len(labels) != 2:
            raise RtilError(f"{where}: {key}.labels must name the baseline and the treatment (two names), got "
                            f"{labels!r}")
        comparison = Comparison(title=typed(option(c, "title", name), str, f"{key}.title", where), labels=labels,
                                baseline=list(c["baseline"]), treatment=list(c["treatment"]),
                                methods=list(c["methods"]), tasks=own_tasks, settings=list(own_settings),
                                budgets=read_budgets(c.get("budgets"), name, list(c["methods"]), tasks, where),
                                protocols=read_protocols(c.get("protocols"), name, methods, list(c["methods"]),
                                                         tasks, where))
        if "continues" in c:
            typed(c["continues"], str, f"{key}.continues", where)
            comparisons[name] = read_continuation(name, c, comparison, comparisons, generators, where)
            continue
        check_same_start(name, comparison, generators, where)
        comparisons.update(expand_snapshots(name, c, comparison, generators, where))
    if not comparisons:
        raise RtilError(f"{where}: comparisons is empty; define at least one comparison")
    return comparisons


def training_settings(train_cfg: dict, changes: dict) -> dict:
    """A training config (parsed) with the study's changes (dotted keys) applied and the model's RTIL setting
    normalised, so that rewording a config (comments, flat or nested `rtil`) does not change the fingerprint of
    the generators it trained."""
    from rtil.training.rtil_settings import normalise_settings

    out = json.loads(json.dumps(train_cfg))
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    model = out.get("model") or {}
    kind = {"StyleGAN2Module": "gaussian", "PGGANModule": "dirichlet"}.get(str(model.get("class_path")).split(".")[-1])
    if kind and isinstance(model.get("init_args"), dict):
        model["init_args"] = normalise_settings(model["init_args"], kind)
    return out


def members_per_step(settings: dict) -> int:
    """How many RTIL members a training config trains per step (its cost relative to a vanilla generator)."""
    init = (settings.get("model") or {}).get("init_args") or {}
    rtil = init.get("rtil") or {}
    members = 1 + len(rtil.get("cut_points") or rtil.get("codes_per_member") or [])
    return members if init.get("member_sampling", "all") == "all" else 1
