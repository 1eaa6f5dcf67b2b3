"""The study configuration as types: StudyConfig and its parts, which rtil.study.config_reading builds from the
YAML file (checked once, before any work starts) and the stages, cells and report receive; the run config file
(out/run_config.json) that carries it to worker processes."""

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

SETTINGS_KINDS = ("tuned", "common")


@dataclass(frozen=True)
class Images:
    """A range of images: the built-in digits' `split` ('validation' or 'test') or the sorted images of `folder`."""

    first: int
    count: int
    split: str | None = None
    folder: str | None = None

    def as_dict(self) -> dict:
        """{split, first, count} or {folder, first, count}: what the keys of tuning runs and cells hold."""
        if self.folder is not None:
            return {"folder": self.folder, "first": self.first, "count": self.count}
        return {"split": self.split, "first": self.first, "count": self.count}


@dataclass(frozen=True)
class Generator:
    """A generator to train: a training config file, its seed and changes to it (train.py arguments); or a snapshot
    of one (`source`'s checkpoint at `kimg`, not trained itself); or one that starts from another's checkpoint
    (`init_from`: {generator, kimg}, trained after it) or from a pretrained generator file ({file, sha256})."""

    config: str
    seed: int
    set: dict
    fingerprint: str  # a hash of everything that determines the trained generator (see training_settings)
    members_per_step: int  # its training cost relative to a vanilla generator
    total_kimg: float | None = None  # its training length (None: the training config's default)
    checkpoint_kimg: float | None = None  # its checkpoint interval
    source: str | None = None  # a snapshot: the trained generator it is taken from, at `kimg`
    kimg: float | None = None
    init_from: dict | None = None  # {generator, kimg}: from that generator's checkpoint at kimg; or {file, sha256}
    tune_from: str | None = None  # use that generator's tuned settings (no tuning runs of its own)


@dataclass(frozen=True)
class Method:
    """A solver under one protocol: the solver's name, its common settings and a line for the report."""

    solver: str
    settings: dict
    description: str


@dataclass(frozen=True)
class Comparison:
    """baseline[i] paired with treatment[i], run with `methods` on `tasks` with the `settings` kinds."""

    title: str
    labels: list
    baseline: list
    treatment: list
    methods: list
    tasks: list
    settings: list
    group: str = ""  # a comparison expanded from `snapshots`: the config's comparison name
    kimg: float | None = None  # and the snapshot's training budget
    tune_at: str = "each"  # snapshots tuned each on its own ('each') or at the longest snapshot ('longest')
    quality_matched: bool = False  # the report also pairs each treatment snapshot with the closest-FDD baseline
    continued_from: float | None = None  # a `continues` budget of a group: where its generators continued the group's
    budgets: dict | None = None  # {method, factors, tasks}: that method again with its steps x factor (budgets.py)
    protocols: dict | None = None  # name -> {method, baseline, treatment, tasks, source}: per-arm settings (protocols)

    @property
    def generators(self) -> list[str]:
        return self.baseline + self.treatment

    @property
    def group_title(self) -> str:
        """The title without its budget (", at <kimg> kimg"), as the config's comparison names the group."""
        return self.title.rsplit(", at ", 1)[0]


@dataclass(frozen=True)
class Tuning:
    """The tune stage: each method's candidate changes (`grids`) or search axes (`search`: method -> list of
    rtil.study.tuning.Axis), scored on `images` with one task."""

    task: str
    param: object
    grids: dict
    images: Images
    batch_size: int
    search: dict = field(default_factory=dict)

    def tunes(self, method: str) -> bool:
        """Whether `method` is tuned per generator (by a grid or a search)."""
        return bool(self.grids.get(method)) or method in self.search


@dataclass(frozen=True)
class Evaluation:
    """The evaluate stage: the test images, tasks -> parameters, and the seed every generator shares."""

    tasks: dict
    images: Images
    batch_size: int
    seed: int
    settings: list
    common_tasks: list


@dataclass(frozen=True)
class StudyConfig:
    """The whole study: where its outputs go, the generators to train, the methods, the paired comparisons, and
    the tune and evaluate stages' images, tasks and seeds."""

    path: str  # the config file, as given
    quick: bool
    out: Path  # every stage's outputs
    report: Path  # the markdown report (figures/ and the per-image CSV beside it)
    jobs: int
    holdout: int
    train_kimg: float | None
    fdd_samples: int
    claims: str
    device: str
    generators: dict  # name -> Generator
    methods: dict  # name -> Method
    comparisons: dict  # name -> Comparison
    tune: Tuning
    evaluate: Evaluation
    fid_samples: int = 0  # generated images per member for FID and KID against the test images (0: none)

    def used_generators(self) -> list[str]:
        """The generators some comparison needs, in the config's order."""
        used = {g for c in self.comparisons.values() for g in c.generators}
        return [g for g in self.generators if g in used]

    def trained_generators(self) -> list[str]:
        """The generators the train stage trains: the used ones, the sources of used snapshots and every generator
        one of them starts from (init_from), in the config's order."""
        needed, todo = set(), list(self.used_generators())
        while todo:
            name = todo.pop()
            g = self.generators[name]
            if g.source is not None:
                todo.append(g.source)
            elif name not in needed:
                needed.add(name)
                todo += [g.init_from["generator"]] if g.init_from and "generator" in g.init_from else []
        return [g for g in self.generators if g in needed]

    def generator_methods(self) -> dict[str, list[str]]:
        """generator -> the methods some comparison runs on it."""
        out = {g: [] for g in self.used_generators()}
        for c in self.comparisons.values():
            for g in c.generators:
                out[g] += [m for m in c.methods if m not in out[g]]
        return out

    def generator_file(self, name: str) -> Path:
        return self.out / "generators" / f"{name}.pt"


def short_hash(obj) -> str:
    """The first 10 hex digits of the sha256 of obj as sorted JSON: what names tuning runs and cells."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:10]


def save_run_config(cfg: StudyConfig) -> Path:
    """out/run_config.json: the resolved config of this run, which its worker processes read (so that editing a
    config or settings file while a study runs cannot give its workers other settings than it started with)."""
    from rtil.atomic_files import write_json_atomically

    path = cfg.out / "run_config.json"
    write_json_atomically(path, {**asdict(cfg), "out": str(cfg.out), "report": str(cfg.report)})
    return path


def load_run_config(path: str | Path) -> StudyConfig:
    """The StudyConfig that save_run_config wrote."""
    from rtil.study.tuning import Axis

    d = json.loads(Path(path).read_text())
    tune, evaluate = d["tune"], d["evaluate"]
    search = {m: [Axis(**{**a, "points": tuple(a["points"]), "limit": tuple(a["limit"]),
                          "index": None if a["index"] is None else tuple(a["index"])}) for a in axes]
              for m, axes in tune.get("search", {}).items()}
    return StudyConfig(**{**d, "out": Path(d["out"]), "report": Path(d["report"]),
                          "generators": {k: Generator(**v) for k, v in d["generators"].items()},
                          "methods": {k: Method(**v) for k, v in d["methods"].items()},
                          "comparisons": {k: Comparison(**v) for k, v in d["comparisons"].items()},
                          "tune": Tuning(**{**tune, "images": Images(**tune["images"]), "search": search}),
                          "evaluate": Evaluation(**{**evaluate, "images": Images(**evaluate["images"])})})
