"""The solver's budget as an axis: a comparison's `budgets` evaluates one method again with its step counts
multiplied, each generator at its own tuned settings otherwise, on a few tasks:

    budgets: {method: ilo, factors: [2, 4, 8], tasks: {cs: [0.25]}}

Each factor f gives cells of settings kind `steps x<f>` (the tuned cells are the factor 1), so the report can draw
treatment - baseline against the total step count and tell a higher ceiling from a faster start."""

from rtil.errors import RtilError

BUDGET_KEYS = ("method", "factors", "tasks")


def budget_kind(factor: float) -> str:
    """The settings kind of a budget's cells."""
    return f"steps x{factor:g}"


def scaled_steps(settings: dict, factor: float) -> dict:
    """settings with every step count ('steps', one number or one per round) multiplied by factor."""
    steps = settings["steps"]
    if isinstance(steps, list):
        return {**settings, "steps": [int(round(s * factor)) for s in steps]}
    return {**settings, "steps": int(round(steps * factor))}


def read_budgets(spec, name: str, methods: list, tasks: dict, where: str) -> dict | None:
    """A comparison's `budgets` (None when absent), checked: one of its methods with a 'steps' setting, factors > 1,
    tasks and parameters among evaluate.tasks."""
    if spec is None:
        return None
    what = f"{where}: comparison {name!r}: budgets"
    if not isinstance(spec, dict) or set(spec) - set(BUDGET_KEYS) or "method" not in spec or "factors" not in spec:
        raise RtilError(f"{what} takes {{method, factors, tasks}}, e.g. {{method: ilo, factors: [2, 4, 8], "
                        f"tasks: {{cs: [0.25]}}}}; got {spec!r}")
    if spec["method"] not in methods:
        raise RtilError(f"{what}: method {spec['method']!r} is not one of the comparison's methods {methods}")
    factors = spec["factors"]
    if (not isinstance(factors, list) or not factors
            or not all(isinstance(f, int | float) and not isinstance(f, bool) and f > 1 for f in factors)):
        raise RtilError(f"{what}: factors must list step multipliers > 1 (the tuned cells are the factor 1), "
                        f"got {factors!r}")
    own = spec.get("tasks", tasks)
    if not isinstance(own, dict) or not own:
        raise RtilError(f"{what}: tasks must map tasks to parameters, e.g. {{cs: [0.25]}}, got {own!r}")
    for task, params in own.items():
        if task not in tasks or not isinstance(params, list) or not set(params) <= set(tasks[task]):
            raise RtilError(f"{what}: task {task!r} with parameters {params!r} is not among evaluate.tasks "
                            f"({tasks})")
    return {"method": spec["method"], "factors": sorted(float(f) for f in factors), "tasks": own}
