"""Reading the study config file (configs/study/digits.yaml documents the format): defaults, the `quick` changes of
--quick, every entry checked before any work starts, and the generators' fingerprints; gives a StudyConfig."""

import json
from pathlib import Path

from rtil.config import read_yaml_file
from rtil.errors import RtilError
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
from rtil.study.config_checks import check_known_keys, check_training_changes, image_files, image_range


def deep_merge(base: dict, changes: dict) -> dict:
    """base with changes applied: mappings merge key by key, any other value replaces."""
    out = dict(base)
    for key, value in changes.items():
        out[key] = deep_merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


TOP_LEVEL = ("out", "report", "jobs", "holdout", "train_kimg", "fdd_samples", "claims", "device", "generators",
             "comparisons", "methods", "tune", "evaluate", "quick")


def read_study_config(path: str | Path, quick: bool = False) -> StudyConfig:
    """The study config (with its `quick` changes applied if quick), every entry checked before any work."""
    from rtil.inverse.run import make_solver

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
    base = path.resolve().parent
    for key in ("out", "generators", "comparisons", "methods", "tune", "evaluate"):
        if key not in raw:
            raise RtilError(f"{path}: missing '{key}'")
    out = Path(raw["out"])
    if out.exists() and not out.is_dir():
        raise RtilError(f"{path}: out {out} is a file; give a folder (existing or new) for the study's outputs")
    top = {"path": str(path), "quick": quick, "out": out, "jobs": int(raw.get("jobs", 1)),
           "holdout": int(raw.get("holdout", 0)), "train_kimg": raw.get("train_kimg"),
           "report": Path(raw.get("report") or out / "report.md"), "fdd_samples": int(raw.get("fdd_samples", 1000)),
           "claims": raw.get("claims", ""), "device": str(raw.get("device", "auto"))}
    if top["jobs"] < 1:
        raise RtilError(f"{path}: jobs must be >= 1")
    generators = read_generators(raw["generators"], path, base, top["holdout"], top["train_kimg"])
    methods = read_methods(raw["methods"], path, base)
    tasks, tune_raw, evaluate_raw = read_tasks(raw, path)
    comparisons = read_comparisons(raw["comparisons"], path, generators, methods, tasks, evaluate_raw)
    grids = tune_raw.get("grids") or {}
    for method, grid in grids.items():
        if method not in methods:
            raise RtilError(f"{path}: tune.grids names method {method!r}, which 'methods' does not define")
        for change in grid:
            make_solver(methods[method].solver, {**methods[method].settings, **change})
    tune = Tuning(task=tune_raw["task"], param=tune_raw["param"], grids=grids,
                  images=Images(**image_range(tune_raw.get("images"), "validation", path)),
                  batch_size=int(tune_raw.get("batch_size", 16)))
    evaluate = Evaluation(tasks=tasks, images=Images(**image_range(evaluate_raw.get("images"), "test", path)),
                          batch_size=int(evaluate_raw.get("batch_size", 16)), seed=int(evaluate_raw.get("seed", 0)),
                          settings=list(evaluate_raw.get("settings") or list(SETTINGS_KINDS)),
                          common_tasks=list(evaluate_raw.get("common_tasks") or tasks))
    for task in evaluate.common_tasks:
        if task not in tasks:
            raise RtilError(f"{path}: evaluate.common_tasks names task {task!r}, which evaluate.tasks does not list")
    val, test = tune.images, evaluate.images
    if val.split == "validation" and top["holdout"] < val.first + val.count:
        raise RtilError(f"{path}: the tuning images reach validation digit {val.first + val.count - 1}, but "
                        f"only {top['holdout']} training digits are held out (holdout)")
    shared = image_files(val.as_dict()) & image_files(test.as_dict())
    if shared:
        raise RtilError(f"{path}: the validation images overlap the test images ({len(shared)} shared, e.g. "
                        f"{sorted(shared)[0]}); tune on images the evaluation never sees")
    return StudyConfig(**top, generators=generators, methods=methods, comparisons=comparisons, tune=tune,
                       evaluate=evaluate)


def read_generators(raw: dict, path: Path, base: Path, holdout: int, train_kimg) -> dict[str, Generator]:
    from rtil.inverse.sweep import resolve_config_path

    generators = {}
    for name, g in raw.items():
        if not isinstance(g, dict) or "config" not in g:
            raise RtilError(f"{path}: generator {name!r} needs a 'config' (a training config file)")
        check_known_keys(g, ("config", "seed", "set", "init_from"), f"{path}", f"generator {name!r}")
        config = resolve_config_path(g["config"], base)
        train_cfg = read_yaml_file(config)
        changes = g.get("set") or {}
        check_training_changes(changes, train_cfg, f"{path}: generator {name!r}", config)
        generator_holdout = changes.get("data.holdout", (train_cfg.get("data") or {}).get("holdout", 0))
        if generator_holdout != holdout:
            raise RtilError(f"{path}: generator {name!r} trains with data.holdout {generator_holdout}, but the study's "
                            f"validation split needs holdout {holdout} (the validation digits must be left out "
                            f"of training)")
        seed = int(g.get("seed", 0))
        settings = training_settings(train_cfg, changes)
        total, every = training_lengths(changes, settings, train_kimg)
        identity = [settings, seed, train_kimg]
        init_from = read_init_from(g["init_from"], name, generators, f"{path}") if "init_from" in g else None
        if init_from is not None:  # and the checkpoint it starts from
            identity.append({"init_from": generators[init_from["generator"]].fingerprint, "kimg": init_from["kimg"]})
        generators[name] = Generator(config=str(config), seed=seed, set=changes, fingerprint=short_hash(identity),
                                     members_per_step=members_per_step(settings), total_kimg=total,
                                     checkpoint_kimg=every, init_from=init_from)
    return generators


def read_methods(raw: dict, path: Path, base: Path) -> dict[str, Method]:
    """Each method's solver and common settings (a settings file and changes to it), checked by building it."""
    from rtil.inverse.run import SOLVERS, load_settings, make_solver
    from rtil.inverse.sweep import resolve_config_path

    methods = {}
    for name, m in raw.items():
        m = dict(m or {})
        settings = load_settings(resolve_config_path(m.pop("file"), base)) if "file" in m else {}
        solver = m.pop("solver", name)
        description = m.pop("description", "")
        settings = {**settings, **m}
        settings.pop("method", None)
        if solver not in SOLVERS:
            raise RtilError(f"{path}: method {name!r}: unknown solver {solver!r}; choose from {', '.join(SOLVERS)} "
                            f"(a method is named after its solver, or names it with `solver:`)")
        make_solver(solver, settings)
        methods[name] = Method(solver=solver, settings=settings, description=description)
    return methods


def read_tasks(raw: dict, path: Path) -> tuple[dict, dict, dict]:
    """evaluate.tasks (checked, with tune's task) and the tune and evaluate mappings."""
    from rtil.inverse.run import TASKS, check_task_parameter

    evaluate, tune = dict(raw["evaluate"]), dict(raw["tune"])
    check_known_keys(evaluate, ("images", "batch_size", "seed", "settings", "common_tasks", "tasks"), f"{path}",
                     "evaluate")
    check_known_keys(tune, ("images", "task", "param", "batch_size", "grids"), f"{path}", "tune")
    tasks = evaluate.get("tasks") or {}
    if not isinstance(tasks, dict) or not tasks:
        raise RtilError(f"{path}: evaluate.tasks must map tasks to lists of parameters")
    for task, params in list(tasks.items()) + [(tune.get("task"), [tune.get("param")])]:
        if task not in TASKS:
            raise RtilError(f"{path}: unknown task {task!r}; choose from {', '.join(TASKS)}")
        if not isinstance(params, list) or not params:
            raise RtilError(f"{path}: task {task!r} needs a list of parameters")
        for p in params:
            check_task_parameter(task, p)
    return tasks, tune, evaluate


def read_comparisons(raw: dict, path: Path, generators: dict, methods: dict, tasks: dict,
                     evaluate: dict) -> dict[str, Comparison]:
    comparisons = {}
    for name, c in raw.items():
        check_known_keys(c, ("title", "labels", "baseline", "treatment", "methods", "tasks", "settings", "snapshots",
                             "tune_at", "quality_matched", "continues"), f"{path}", f"comparison {name!r}")
        for key in ("baseline", "treatment", "methods"):
            if not isinstance(c.get(key), list) or not c[key]:
                raise RtilError(f"{path}: comparison {name!r} needs a non-empty list '{key}'")
        if len(c["baseline"]) != len(c["treatment"]):
            raise RtilError(f"{path}: comparison {name!r} pairs baseline[i] with treatment[i]: the lists must have "
                            f"the same length")
        for g in c["baseline"] + c["treatment"]:
            if g not in generators:
                raise RtilError(f"{path}: comparison {name!r} names generator {g!r}, which 'generators' does not "
                                f"define")
        for m in c["methods"]:
            if m not in methods:
                raise RtilError(f"{path}: comparison {name!r} names method {m!r}, which 'methods' does not define")
        own_tasks = c.get("tasks") or list(tasks)
        for t in own_tasks:
            if t not in tasks:
                raise RtilError(f"{path}: comparison {name!r} names task {t!r}, which evaluate.tasks does not list")
        own_settings = c.get("settings") or evaluate.get("settings") or list(SETTINGS_KINDS)
        for kind in own_settings:
            if kind not in SETTINGS_KINDS:
                raise RtilError(f"{path}: evaluate.settings (or a comparison's settings) take 'tuned' and/or "
                                f"'common', got {kind!r}")
        comparison = Comparison(title=c.get("title", name), labels=c.get("labels") or ["baseline", "treatment"],
                                baseline=list(c["baseline"]), treatment=list(c["treatment"]),
                                methods=list(c["methods"]), tasks=own_tasks, settings=list(own_settings))
        if "continues" in c:
            comparisons[name] = read_continuation(name, c, comparison, comparisons, generators, f"{path}")
            continue
        check_same_start(name, comparison, generators, f"{path}")
        comparisons.update(expand_snapshots(name, c, comparison, generators, f"{path}"))
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
