"""Named solver protocols: a comparison's `protocols` evaluates one of its methods again with settings of each arm's
own, e.g. a paper's protocol beside the study's tuned settings:

    protocols:
      paper:
        method: mganprior
        baseline: {optimizer: sgd, lr: 1.0}     # changes to the method's common settings for the baseline generators
        treatment: {optimizer: adam, lr: 0.1}   # and for the treatment generators
        tasks: {cs: [0.25]}
        source: "where the protocol comes from (one line)"

Each protocol gives cells of settings kind `protocol <name>`, so the report can set the treatment - baseline
difference under that protocol beside the one at the tuned settings."""

from rtil.errors import RtilError
from rtil.study.config_checks import check_task

PROTOCOL_KEYS = ("method", "baseline", "treatment", "tasks", "source")
ARMS = ("baseline", "treatment")


def protocol_kind(name: str) -> str:
    """The settings kind of a protocol's cells."""
    return f"protocol {name}"


def protocol_settings(common: dict, protocol: dict, arm: str) -> dict:
    """The settings an arm's generators run the protocol's method with: the common settings with the arm's changes."""
    return {**common, **protocol[arm]}


def read_protocols(spec, name: str, methods: dict, comparison_methods: list, tasks: dict, where: str) -> dict | None:
    """A comparison's `protocols` (None when absent), checked: each a method of the comparison, each arm's changes
    accepted by its solver on every task of the protocol, tasks among evaluate.tasks with valid parameters."""
    if spec is None:
        return None
    key = f"comparisons.{name}.protocols"
    if not isinstance(spec, dict) or not spec:
        raise RtilError(f"{where}: {key} must map protocol names to {{method, baseline, treatment, tasks, source}}, "
                        f"got {spec!r}")
    for protocol in spec:
        if not isinstance(protocol, str) or not protocol.strip():
            raise RtilError(f"{where}: {key}: a protocol's name must be a non-empty string, got {protocol!r}")
    return {protocol: _read_protocol(entry, f"{key}.{protocol}", methods, comparison_methods, tasks, where)
            for protocol, entry in spec.items()}


def _read_protocol(entry, key: str, methods: dict, comparison_methods: list, tasks: dict, where: str) -> dict:
    """One protocol, checked (`key`: comparisons.<name>.protocols.<protocol>)."""
    if (not isinstance(entry, dict) or set(entry) - set(PROTOCOL_KEYS)
            or not set(PROTOCOL_KEYS[:-1]) <= set(entry)):
        raise RtilError(f"{where}: {key} takes {{method, baseline, treatment, tasks, source}} (source optional), e.g. "
                        f"{{method: csgm, baseline: {{}}, treatment: {{lr: 0.1}}, tasks: {{cs: [0.25]}}}}; "
                        f"got {entry!r}")
    method = entry["method"]
    if not isinstance(method, str) or method not in comparison_methods:
        raise RtilError(f"{where}: {key}.method: {method!r} is not one of the comparison's methods "
                        f"{comparison_methods}")
    source = entry.get("source", "")
    if not isinstance(source, str) or "\n" in source.strip():
        raise RtilError(f"{where}: {key}.source must be one line saying where the protocol comes from, got "
                        f"{source!r}")
    own_tasks = _read_tasks(entry["tasks"], f"{key}.tasks", tasks, where)
    for arm in ARMS:
        change = entry[arm]
        if not isinstance(change, dict):
            raise RtilError(f"{where}: {key}.{arm} must be a mapping of changes to {method}'s common settings (may "
                            f"be empty), got {change!r}")
        for task in own_tasks:
            check_arm_settings(methods[method].solver, methods[method].settings, change, task, f"{key}.{arm}", where)
    return {"method": method, "baseline": dict(entry["baseline"]), "treatment": dict(entry["treatment"]),
            "tasks": own_tasks, "source": source.strip()}


def _read_tasks(spec, key: str, tasks: dict, where: str) -> dict:
    """A protocol's tasks: tasks of evaluate.tasks, each with a list of valid parameters."""
    if not isinstance(spec, dict) or not spec:
        raise RtilError(f"{where}: {key} must map tasks to parameters, e.g. {{cs: [0.25]}}, got {spec!r}")
    for task, params in spec.items():
        if task not in tasks:
            raise RtilError(f"{where}: {key}: task {task!r} is not among evaluate.tasks ({', '.join(tasks)})")
        check_task(task, params, f"{key}", f"{key}.{task}", where)
    return dict(spec)


def check_arm_settings(solver: str, common: dict, change: dict, task: str, key: str, where: str) -> None:
    """Build the solver with the common settings and an arm's changes for `task`, as rtil.study.cells'
    effective_settings does; an error names the first change the solver refuses on its own."""
    from rtil.inverse.run import make_solver

    try:
        make_solver(solver, {**common, **change}, task).settings()
    except RtilError as e:
        for setting, value in change.items():
            try:
                make_solver(solver, {**common, setting: value}, task)
            except RtilError as alone:
                raise RtilError(f"{where}: {key}, setting {setting!r}: {alone}") from None
        raise RtilError(f"{where}: {key}: {e}") from None
