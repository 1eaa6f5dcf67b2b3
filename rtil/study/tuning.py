"""The tuning search: each method's settings searched per generator on the validation images, so that every generator
is compared at its own optimum.

A method's search (the study config's `tune.search.<method>`) is a list of axes, each a line of candidate changes to
the method's common settings through one point, the common settings themselves:

    {name: round-0 lr, key: lr, index: [0], scale: [0.33, 1, 3], extend: 3}   # factors on lr[0]
    {name: codes, key: num_codes, values: [4, 8, 20], extend: 2, limit: [1, 20], why: the paper's N}
    {name: optimizer, values: [{}, {optimizer: sgd, lr: 1.0}]}                # changes of several settings

The search is a coordinate search: starting at the common settings, it scores every point of the first axis with the
others held at the current best, moves there, and so on for every axis; it sweeps the axes again while a sweep moved
(at most MAX_SWEEPS times). When a line's best point is its first or last one and the axis is numeric with `extend`,
the line grows by that factor beyond the edge (within `limit`, at most MAX_EXTENSIONS times) until the best is
inside; a best that stays on an edge is reported with the reason (the axis's `why`, its limit, or a line that kept
improving). Which candidates run next is a function of the finished
tuning runs alone (out/tune/*.json), so the tune stage simply runs the pending ones round after round, in any number
of workers, and an interrupted search resumes where it stopped.

Candidates are scored by their mean validation PSNR (ties: the earlier point of the line)."""

from dataclasses import dataclass, field

from rtil.errors import RtilError

MAX_SWEEPS = 3
MAX_EXTENSIONS = 6  # per axis and side: a line still improving after that many is reported, not followed
AXIS_KEYS = ("name", "key", "index", "scale", "values", "extend", "limit", "why")


@dataclass(frozen=True)
class Axis:
    """One line of the search. Points are factors on the common setting `key` (`scale`; for a list setting only at
    `index`, else every entry), values of `key` (`values`), or whole changes (`values` of mappings, no `key`)."""

    name: str
    points: tuple
    key: str | None = None
    index: tuple | None = None
    scale: bool = False
    extend: float | None = None
    limit: tuple = (float("-inf"), float("inf"))
    why: str = ""

    @property
    def numeric(self) -> bool:
        return all(isinstance(p, int | float) and not isinstance(p, bool) for p in self.points)

    def apply(self, settings: dict, point) -> dict:
        """settings with this axis at `point`."""
        if self.key is None:
            return {**settings, **point}
        if not self.scale:
            return {**settings, self.key: point}
        value = settings[self.key]
        if isinstance(value, list):
            chosen = range(len(value)) if self.index is None else self.index
            return {**settings, self.key: [_round(v * point) if i in chosen else v for i, v in enumerate(value)]}
        return {**settings, self.key: _round(value * point)}

    def start(self, common: dict):
        """The point that leaves the common settings as they are."""
        for p in self.points:
            if self.apply(common, p) == common:
                return p
        raise RtilError(f"tuning axis {self.name!r}: its 'scale' / 'values' must pass through the common settings "
                        f"(a factor 1, the common value or an empty change {{}}); its points are {list(self.points)}")

    def beyond(self, point, upward: bool):
        """The next point past an edge, or None when the axis cannot grow there."""
        if self.extend is None or not self.numeric:
            return None
        nxt = point * self.extend if upward else point / self.extend
        nxt = int(round(nxt)) if all(isinstance(p, int) for p in self.points) and not self.scale else _round(nxt)
        lo, hi = self.limit
        if nxt == point:
            return None
        if nxt > hi or nxt < lo:
            clipped = min(max(nxt, lo), hi)
            return None if clipped == point or clipped in self.points else clipped
        return nxt


def _same_kind(value, common) -> bool:
    """Whether a value may stand for the common value: a bool for a bool, a number for a number, else equal types."""
    if isinstance(common, bool) or isinstance(value, bool):
        return isinstance(common, bool) and isinstance(value, bool)
    if isinstance(common, int | float):
        return isinstance(value, int | float)
    return isinstance(value, type(common))


def _round(x: float) -> float:
    """4 significant digits: candidates named by their settings stay the same whatever the float path to them."""
    return float(f"{x:.4g}")


def read_axes(method: str, raw, common: dict, where: str) -> list[Axis]:
    """The axes of `tune.search.<method>`, each checked to pass through the common settings."""
    if not isinstance(raw, list) or not raw:
        raise RtilError(f"{where}: tune.search.{method} must be a list of axes, e.g. "
                        f"[{{name: lr, key: lr, scale: [0.5, 1, 2], extend: 2}}]")
    axes = []
    for i, spec in enumerate(raw):
        what = f"{where}: tune.search.{method}[{i}]"
        if not isinstance(spec, dict):
            raise RtilError(f"{what} must be a mapping with 'scale' or 'values', got {spec!r}")
        unknown = [k for k in spec if k not in AXIS_KEYS]
        if unknown:
            raise RtilError(f"{what}: unknown key {unknown[0]!r}; the keys are {', '.join(AXIS_KEYS)}")
        if ("scale" in spec) == ("values" in spec):
            raise RtilError(f"{what} needs exactly one of 'scale' (factors on the common setting) and 'values'")
        points = spec.get("scale", spec.get("values"))
        if not isinstance(points, list) or len(points) < 2 or len({str(p) for p in points}) != len(points):
            raise RtilError(f"{what}: 'scale' / 'values' must list at least two different points, got {points!r}")
        key = spec.get("key")
        for text in ("name", "key", "why"):
            if text in spec and not isinstance(spec[text], str):
                raise RtilError(f"{what}: '{text}' must be a string, got {spec[text]!r}")
        if key is None and not all(isinstance(p, dict) for p in points):
            raise RtilError(f"{what}: without 'key' every point of 'values' must be a mapping of settings (a change)")
        if key is not None and key not in common:
            raise RtilError(f"{what}: 'key' {key!r} is not a setting of {method} (its common settings)")
        if key is not None and "values" in spec and not all(_same_kind(p, common[key]) for p in points):
            raise RtilError(f"{what}: 'values' of {key!r} must be of the type of its common value "
                            f"{common[key]!r}, got {points!r}")
        if "scale" in spec and not all(isinstance(p, int | float) and not isinstance(p, bool) and p > 0
                                       for p in points):
            raise RtilError(f"{what}: 'scale' takes factors > 0, got {points!r}")
        index = spec.get("index")
        if index is not None and (not isinstance(index, list) or not all(isinstance(j, int) for j in index)
                                  or not isinstance(common.get(key), list)):
            raise RtilError(f"{what}: 'index' lists positions in the list setting {key!r}")
        extend = spec.get("extend")
        if extend is not None and (isinstance(extend, bool) or not isinstance(extend, int | float) or extend <= 1):
            raise RtilError(f"{what}: 'extend' is the factor (> 1) by which a line grows past an edge, got {extend!r}")
        limit = spec.get("limit", [float("-inf"), float("inf")])
        if (not isinstance(limit, list) or len(limit) != 2
                or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in limit)):
            raise RtilError(f"{what}: 'limit' is [lowest, highest] point, got {limit!r}")
        axis = Axis(name=str(spec.get("name", key or f"axis {i}")), points=tuple(points), key=key,
                    index=None if index is None else tuple(index), scale="scale" in spec,
                    extend=None if extend is None else float(extend), limit=(float(limit[0]), float(limit[1])),
                    why=str(spec.get("why", "")))
        if extend is not None and not axis.numeric:
            raise RtilError(f"{what}: only an axis of numbers can 'extend'")
        if axis.numeric and list(axis.points) != sorted(axis.points):
            raise RtilError(f"{what}: list the points in increasing order, got {points!r}")
        axis.start(common)
        axes.append(axis)
    return axes


@dataclass
class SearchState:
    """Where one generator's search of one method stands: every candidate scored so far (settings -> mean PSNR, in
    the order they were asked for), the candidates to run next (empty when finished), the chosen settings and the
    notes on edges."""

    scored: list = field(default_factory=list)  # [(settings, mean psnr)]
    pending: list = field(default_factory=list)  # [settings]
    chosen: dict | None = None
    notes: list = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return not self.pending


def search(axes: list[Axis], common: dict, score) -> SearchState:
    """Walk the coordinate search as far as the finished runs allow. score(settings) gives a candidate's mean
    validation PSNR, or None when it has not run yet (it is then pending)."""
    state = SearchState()
    seen = {}

    def scored(settings):
        key = repr(sorted(settings.items(), key=lambda kv: kv[0]))
        if key not in seen:
            seen[key] = score(settings)
            if seen[key] is None:
                state.pending.append(settings)
            else:
                state.scored.append((settings, seen[key]))
        return seen[key]

    def settings_at(center):
        out = common
        for axis in axes:
            out = axis.apply(out, center[axis.name])
        return out

    center = {axis.name: axis.start(common) for axis in axes}
    lines = {axis.name: list(axis.points) for axis in axes}
    notes = {}
    for _ in range(MAX_SWEEPS):
        moved = False
        for axis in axes:
            line = lines[axis.name]
            while True:
                values = [scored(settings_at({**center, axis.name: p})) for p in line]
                if any(v is None for v in values):
                    return state
                best = max(range(len(line)), key=lambda i: (values[i], -i))
                if axis.numeric and best in (0, len(line) - 1):
                    upward = best == len(line) - 1
                    grown = sum(p > max(axis.points) if upward else p < min(axis.points) for p in line)
                    nxt = axis.beyond(line[best], upward) if grown < MAX_EXTENSIONS else None
                    if nxt is not None and nxt not in line:
                        line.insert(0 if best == 0 else len(line), nxt)
                        continue
                    side = "highest" if upward else "lowest"
                    reason = (f"it grew {MAX_EXTENSIONS} times past that edge and still improves there (the setting "
                              f"hardly matters, or it wants no bound)" if grown >= MAX_EXTENSIONS
                              else "its limit" + (f", {axis.why}" if axis.why else "") if axis.extend
                              else axis.why or "the axis does not grow")
                    notes[axis.name] = (f"{axis.name}: the best is the line's {side} point "
                                        f"({'x' if axis.scale else ''}{line[best]:g}): {reason}")
                else:
                    notes.pop(axis.name, None)
                break
            if line[best] != center[axis.name]:
                center[axis.name], moved = line[best], True
        if not moved:
            break
    state.chosen = settings_at(center)
    state.notes = [notes[a.name] for a in axes if a.name in notes]
    return state


def search_base(solver: str, settings: dict) -> dict:
    """Where a method's search starts: its common settings with every other setting of its solver at the solver's
    default, so that an axis may change a setting the settings file leaves out."""
    from rtil.inverse.run import make_solver

    defaults = make_solver(solver, settings).settings()
    defaults.pop("method", None)
    return {**defaults, **settings}


def change_from(common: dict, settings: dict) -> dict:
    """The entries of settings that differ from the common settings (a candidate's name in tables)."""
    return {k: v for k, v in settings.items() if common.get(k) != v}


def read_search(raw, methods: dict, grids: dict, where: str) -> dict[str, list[Axis]]:
    """`tune.search`: method -> its axes (a method is tuned by a grid or by a search, not both); every candidate on
    the axes' lines is a valid setting of the method's solver."""
    from rtil.inverse.run import make_solver

    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise RtilError(f"{where}: tune.search must map methods to lists of axes, got {raw!r}")
    out = {}
    for method, spec in raw.items():
        if method not in methods:
            raise RtilError(f"{where}: tune.search names method {method!r}, which 'methods' does not define")
        if grids.get(method):
            raise RtilError(f"{where}: method {method!r} has both tune.grids and tune.search; keep one")
        common = search_base(methods[method].solver, methods[method].settings)
        out[method] = read_axes(method, spec, common, where)
        for axis in out[method]:
            for point in axis.points:
                try:
                    make_solver(methods[method].solver, axis.apply(common, point))
                except RtilError as e:
                    raise RtilError(f"{where}: tune.search.{method}, axis {axis.name!r} at {point!r}: {e}") from None
    return out
