"""Does RTIL help *your* generator? One command from a pretrained generator file and its image folder to a paired
answer with confidence intervals:

    python -m rtil study --generator FILE --data DIR --out OUT [--kimg 20] [--tasks cs:0.25,inpaint:0.5,sr:4]
        [--methods ilo,csgm] [--seeds 0] [--jobs N] [--test DIR] [--validation-images 32] [--test-images 100]
        [--set model.init_args.lr=0.002 ...] [--quick]

It writes into OUT (a new or empty folder, or one it wrote before):

    training.yaml      the train.py config continued from FILE (rtil/training/config_from_file.py, then --set)
    split.json, held_out.txt, images/   validation and test images held out of DIR (rtil/data/split.py)
    study.yaml         the study config it runs: `python -m rtil study --config OUT/study.yaml` resumes and
                       reproduces it (with --quick, its body is the quick budget; else its `quick` runs one in
                       OUT/quick)
    work/              the study's outputs (trained generators, tuning runs, cells)
    results.md, results_per_image.csv, figures/   the report

The study continues FILE for --kimg kimg once as vanilla and once as RTIL per seed (init_from: {file}, the same
start, seed and iterations), tunes each method per generator on the validation images (the tuning search of
configs/study/digits_long.yaml) and evaluates both on the test images, paired; the export stage computes each
member's FID and KID against the test images when the Inception weights are there. Before the long work it prints
the estimated time, extrapolated from a short warm-up (rtil/study/estimate.py). A rerun with the same options
resumes; other options for the same OUT are refused (the study would mix two settings).
"""

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from rtil.errors import RtilError

MARK = "# Written by `python -m rtil study --generator` (rtil/study/own_generator.py); do not edit by hand:"
DEFAULT_TASKS = "cs:0.25,inpaint:0.5,sr:4"
DEFAULT_METHODS = {"stylegan2": ["ilo", "csgm"], "pggan": ["mganprior", "csgm"]}
QUICK_KIMG = 0.032  # two steps at batch 16
COMPARISON = "own_generator"
PAPER_CLAIMS = ("The RTIL paper (section 4, CelebA-HQ, 100 images per cell, 95% CIs) reports, RTIL minus vanilla in "
                "PSNR: ILO: compressed sensing +1.28 dB at 25% and +1.3 at 10% measurements; random inpainting +1.88 "
                "dB at 50% observed pixels; super-resolution +0.77 dB at x4. mGANprior (N = 20 codes): compressed "
                "sensing at least +1.6 dB at every ratio above 1%; inpainting +2.5 dB at 50% observed; "
                "super-resolution +1.51 dB at x4 (configs/study/digits_long.yaml, docs/results_20kimg.md).")


@dataclass
class OwnStudy:
    """The options of the command (see the module docstring)."""

    generator: str
    data: str
    out: str
    kimg: float = 20.0
    tasks: str = DEFAULT_TASKS
    methods: str | None = None  # default: DEFAULT_METHODS of the generator's family
    seeds: str = "0"
    jobs: int = 1
    quick: bool = False
    test: str | None = None
    validation_images: int = 32
    test_images: int = 100
    sets: list = field(default_factory=list)  # "key=value" train.py settings


def parse_tasks(text: str) -> dict:
    """"cs:0.25,inpaint:0.5,sr:4" -> {"cs": [0.25], "inpaint": [0.5], "sr": [4]} (a task named twice gets both)."""
    from rtil.study.config_checks import check_task

    tasks = {}
    for item in text.split(","):
        task, _, value = item.strip().partition(":")
        try:
            param = yaml.safe_load(value)
        except yaml.YAMLError:
            param = None
        if not task or isinstance(param, bool) or not isinstance(param, int | float):
            raise RtilError(f"--tasks takes TASK:PARAMETER,... (e.g. {DEFAULT_TASKS}), got {item.strip()!r}")
        tasks.setdefault(task, []).append(param)
    for task, params in tasks.items():
        check_task(task, params, "task", "parameter", "--tasks")
    return tasks


def parse_seeds(text: str) -> list[int]:
    from rtil.cli_checks import SEED_RANGE

    try:
        seeds = [int(s) for s in text.split(",")]
    except ValueError:
        raise RtilError(f"--seeds takes integers separated by commas (e.g. 0,1), got {text!r}") from None
    if len(set(seeds)) != len(seeds) or not all(SEED_RANGE.contains(s) for s in seeds):
        raise RtilError(f"--seeds must be distinct integers {SEED_RANGE.describe()}, got {text!r}")
    return seeds


def parse_sets(items: list[str]) -> dict:
    """["model.init_args.lr=0.002", ...] -> {"model.init_args.lr": 0.002} (values read as YAML)."""
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise RtilError(f"--set takes KEY=VALUE (a train.py option without its --, e.g. data.batch_size=8), "
                            f"got {item!r}")
        try:
            out[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError:
            raise RtilError(f"--set {item!r}: the value is not valid YAML") from None
    return out


def apply_sets(config: dict, changes: dict) -> dict:
    """The config with dotted-key changes applied (e.g. data.batch_size)."""
    import copy

    out = copy.deepcopy(config)
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        node = out
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return out


def check_out(out: Path) -> None:
    """OUT is new, empty, or a folder this command wrote (its study.yaml starts with MARK)."""
    if out.exists() and not out.is_dir():
        raise RtilError(f"--out {out} is a file; give a folder (new, empty, or one this command wrote before)")
    study = out / "study.yaml"
    if out.is_dir() and any(out.iterdir()) and not (study.is_file() and study.read_text().startswith(MARK)):
        raise RtilError(f"--out {out} holds files this command did not write (no study.yaml of its own); give a new "
                        f"or empty folder")


def check_folders(options: OwnStudy, out: Path) -> None:
    """The generator file and the image folders are not in OUT, nor OUT in an image folder (training would read
    the held-out copies)."""
    for what, path in (("--data", options.data), ("--test", options.test)):
        if path is None:
            continue
        folder = Path(path).resolve()
        if out.resolve().is_relative_to(folder) or folder.is_relative_to(out.resolve()):
            raise RtilError(f"--out {out} and {what} {path} overlap; the held-out images written to --out would be "
                            f"read as training images: give folders side by side")
    if Path(options.generator).resolve().is_relative_to(out.resolve()):
        raise RtilError(f"--generator {options.generator} lies in --out {out}; keep the inputs outside it")


def read_generator(path: str, data: str, kimg: float) -> tuple[dict, list[str]]:
    """The training config for the generator file; the file's errors name --generator."""
    from rtil.training.config_from_file import training_config_from_file

    try:
        return training_config_from_file(path, data, kimg)
    except RtilError as e:
        raise RtilError(str(e).replace(f"--init_from {path}", f"--generator {path}", 1)) from None


def solver_settings(method: str, family: dict, quick: bool) -> dict:
    """A method's settings matched to the generator's RTIL family: ILO optimises the features at cut 0 and at the
    family's cut points (as the RTIL paper and the digits study), mGANprior fuses the family's largest number of
    codes at its cut; one start for CSGM and mGANprior (a reference, as in the digits study); --quick: few steps."""
    if method == "ilo" and family.get("kind") == "gaussian":
        rounds = 1 + len(family["cut_points"])
        settings = {"cut_points": [0, *family["cut_points"]], "steps": [200] + [100] * (rounds - 1),
                    "lr": [0.3] + [0.05] * (rounds - 1), "noise_layers": [1 + 2 * r for r in range(rounds)],
                    "l1_radius": [0.3] + [0.15] * (rounds - 2)}
        if quick:
            settings["steps"] = [8] + [4] * (rounds - 1)
        return settings
    if method == "mganprior" and family.get("kind") == "dirichlet":
        return {"num_codes": max(family["codes_per_member"]), "cut_point": family["cut_point"], "restarts": 1,
                **({"steps": 8} if quick else {})}
    if method in ("csgm", "mganprior"):
        return {"restarts": 1, **({"steps": 8} if quick else {})}
    return {}


def tuning_search(methods: list[str], family: dict, quick: bool) -> dict:
    """The tune.search axes (rtil/study/tuning.py) of configs/study/digits_long.yaml for the methods used here
    (--quick: one short, bounded axis per method)."""
    later = list(range(1, 1 + len(family.get("cut_points") or [])))
    if quick:
        axes = {"ilo": [{"name": "round-0 lr", "key": "lr", "index": [0], "scale": [0.33, 1, 3], "extend": 3,
                         "limit": [0.1, 9]}],
                "csgm": [{"name": "lr", "key": "lr", "scale": [0.5, 1, 2], "extend": 2, "limit": [0.25, 4]}],
                "mganprior": [{"name": "lr", "key": "lr", "scale": [0.33, 1, 3], "extend": 3, "limit": [0.1, 9]}]}
    else:
        axes = {"ilo": [{"name": "round-0 lr", "key": "lr", "index": [0], "scale": [0.33, 1, 3], "extend": 3},
                        {"name": "later-round lr", "key": "lr", "index": later, "scale": [0.33, 1, 3], "extend": 3},
                        {"name": "l1 radii", "key": "l1_radius", "scale": [0.5, 1, 2], "extend": 2}],
                "csgm": [{"name": "lr", "key": "lr", "scale": [0.5, 1, 2], "extend": 2}]
                + ([{"name": "noise maps", "key": "optimize_noises", "values": [False, True]}]
                   if family.get("kind") == "gaussian" else []),
                "mganprior": [{"name": "optimiser", "values": [{}, {"optimizer": "sgd", "lr": 1.0}]},
                              {"name": "lr", "key": "lr", "scale": [0.33, 1, 3], "extend": 3}]}
        if not later:
            axes["ilo"] = axes["ilo"][:1]
    return {m: axes[m] for m in methods if m in axes}


def study_config(options: OwnStudy, out: Path, training: Path, split: dict, family: dict, methods: list[str],
                 quick: bool) -> dict:
    """The study config (a mapping) of the command: the quick budget when `quick`, else the full one."""
    from rtil.study.config_reading import FID_SAMPLES, QUICK_FID_SAMPLES

    tasks = parse_tasks(options.tasks)
    first_task = next(iter(tasks))
    generator = str(Path(options.generator).resolve())
    generators, baseline, treatment = {}, [], []
    for seed in parse_seeds(options.seeds):
        baseline.append(f"vanilla_seed{seed}")
        treatment.append(f"rtil_seed{seed}")
        generators[baseline[-1]] = {"config": str(training), "seed": seed, "init_from": {"file": generator},
                                    "set": {"model.init_args.rtil": None}}
        generators[treatment[-1]] = {"config": str(training), "seed": seed, "init_from": {"file": generator}}
    validation, test = len(split["images"]["validation"]), len(split["images"]["test"])
    source = "held out of the same folder" if split["test_folder"] is None else f"of {split['test_folder']}"
    kimg = QUICK_KIMG if quick else options.kimg
    claims = (f"The question here: does regularising this generator with RTIL make it a better prior? Both arms "
              f"continue {Path(generator).name} (SHA-256 {_sha256(generator)[:12]}...) for {kimg:g} kimg on "
              f"{split['folder']} from the same weights with the same seed and iterations (fresh optimisers), once "
              f"as vanilla and once as RTIL ({describe_family(family)}); each method is tuned per generator on "
              f"{validation} held-out images and evaluated on {test} test images ({source}, never trained on). "
              + PAPER_CLAIMS
              + (" Quick run: a tiny budget to check the pipeline, not a result." if quick else ""))
    return {"out": str(out / ("work" if not quick or options.quick else "quick/work")),
            "report": str(out / ("results.md" if not quick or options.quick else "quick/results.md")),
            "jobs": options.jobs, "holdout": 0, "train_kimg": kimg, "fdd_samples": 0,
            "fid_samples": QUICK_FID_SAMPLES if quick else FID_SAMPLES, "claims": claims,
            "generators": generators,
            "comparisons": {COMPARISON: {
                "title": f"{Path(generator).name} continued {kimg:g} kimg, as vanilla vs as RTIL",
                "labels": ["vanilla", "RTIL"], "baseline": baseline, "treatment": treatment, "methods": methods}},
            "methods": {m: solver_settings(m, family, quick) for m in methods},
            "tune": {"images": {"folder": str(out / "images" / "validation"), "first": 0,
                                "count": min(3 if quick else 32, validation)},
                     "task": first_task, "param": tasks[first_task][0], "batch_size": 3 if quick else 16,
                     "search": tuning_search(methods, family, quick)},
            "evaluate": {"images": {"folder": str(out / "images" / "test"), "first": 0,
                                    "count": min(4, test) if quick else test},
                         "batch_size": 4 if quick else 25, "seed": 0, "settings": ["tuned"], "tasks": tasks}}


def describe_family(family: dict) -> str:
    if family["kind"] == "gaussian":
        return f"Gaussian latents at cut points {family['cut_points']}, sigma {family.get('sigma', 1.0):g}"
    return f"Dirichlet fusion of {family['codes_per_member']} codes at cut {family['cut_point']}"


def _sha256(path: str) -> str:
    from rtil.importers.common import sha256

    return sha256(path)


def write_own_study(options: OwnStudy) -> Path:
    """Check the options, write OUT's training config, split and study config (see the module docstring); returns
    the study config's path. Nothing is trained yet."""
    from rtil.data.folder import find_image_files
    from rtil.data.split import split_image_folder, split_summary
    from rtil.inverse.run import SOLVERS
    from rtil.study.config_checks import check_training_changes

    out = Path(options.out).resolve()
    check_out(out)
    check_folders(options, out)
    parse_tasks(options.tasks)
    parse_seeds(options.seeds)
    if not options.kimg > 0:
        raise RtilError(f"--kimg must be > 0, got {options.kimg}")
    config, notes = read_generator(options.generator, options.data, options.kimg)
    sets = parse_sets(options.sets)
    check_training_changes(sets, config, "--set", out / "training.yaml")
    config = apply_sets(config, sets)
    family_kind = "gaussian" if config["model"]["class_path"].endswith("StyleGAN2Module") else "dirichlet"
    family = config["model"]["init_args"].get("rtil") or {}
    if family.get("kind", family_kind) != family_kind or not (family.get("cut_points") or
                                                             family.get("codes_per_member")):
        raise RtilError(f"--set model.init_args.rtil: the RTIL arm needs a {family_kind} family with members, got "
                        f"{family or None}")
    methods = ([m.strip() for m in options.methods.split(",") if m.strip()] if options.methods
               else DEFAULT_METHODS["stylegan2" if family_kind == "gaussian" else "pggan"])
    for m in methods:
        if m not in SOLVERS:
            raise RtilError(f"--methods: unknown method {m!r}; choose from {', '.join(SOLVERS)}")
    data = config["data"]
    for folder in (options.data, options.test):
        if folder is not None:
            find_image_files(folder)  # a missing folder, or one without images, before OUT is made
    out.mkdir(parents=True, exist_ok=True)
    split = split_image_folder(options.data, out, data["resolution"], data["channels"], options.validation_images,
                               options.test_images, min_train=data["batch_size"], test_folder=options.test)
    print("\n".join(["training config:", *notes, split_summary(split)]), flush=True)
    config["data"]["exclude"] = str(out / "held_out.txt")
    training = out / "training.yaml"
    header = "".join(f"# {line}\n" for line in [MARK.removeprefix("# "), *notes,
                                                 *(f"--set {k}={v}" for k, v in sets.items())])
    _write_or_check(training, header, config)
    study = study_config(options, out, training, split, family, methods, quick=options.quick)
    if options.quick:
        study["quick"] = {}  # the body is the quick budget: --quick changes nothing
    else:
        quick = study_config(options, out, training, split, family, methods, quick=True)
        study["quick"] = {k: v for k, v in quick.items() if v != study[k]}
    command = "python -m rtil study " + " ".join(_command_options(options))
    _write_or_check(out / "study.yaml", f"{MARK}\n# {command}\n", study, ignore=("jobs",))
    return out / "study.yaml"


def _command_options(options: OwnStudy) -> list[str]:
    parts = [f"--generator {options.generator}", f"--data {options.data}", f"--out {options.out}",
             f"--kimg {options.kimg:g}", f"--tasks {options.tasks}", f"--seeds {options.seeds}"]
    parts += [f"--methods {options.methods}"] if options.methods else []
    parts += [f"--test {options.test}"] if options.test else []
    parts += [f"--validation-images {options.validation_images}", f"--test-images {options.test_images}"]
    parts += [f"--set {item}" for item in options.sets] + (["--quick"] if options.quick else [])
    return parts


def _write_or_check(path: Path, header: str, content: dict, ignore: tuple = ()) -> None:
    """Write header + content as YAML, or, when the file exists, check that it holds the same content (keys in
    `ignore` aside): a rerun must not change a study half done."""
    from rtil.atomic_files import write_text_atomically

    if path.is_file():
        before = yaml.safe_load(path.read_text()) or {}
        differing = sorted(k for k in set(before) | set(content) if k not in ignore and before.get(k) != content.get(k))
        if differing:
            raise RtilError(f"{path} was written with other options ({differing[0]} differs); rerun with the options "
                            f"it was written with (its second line), resume it with `python -m rtil study --config "
                            f"{path.parent / 'study.yaml'}`, or give a new --out")
        return
    write_text_atomically(path, header + yaml.safe_dump(content, sort_keys=False, width=110))


def run_own_study(options: OwnStudy) -> dict:
    """Write OUT's configs and split (write_own_study), print the estimated time (rtil.study.estimate), then run
    the study (rtil.study.runner.run_study)."""
    from dataclasses import replace

    from rtil.study.config_reading import read_study_config
    from rtil.study.estimate import print_estimate
    from rtil.study.runner import run_study

    path = write_own_study(options)
    print(f"study config: {path} (resume or reproduce: python -m rtil study --config {path}"
          f"{' --quick' if options.quick else ''})", flush=True)
    print_estimate(replace(read_study_config(path, options.quick), jobs=options.jobs))
    return run_study(path, quick=options.quick, jobs=options.jobs)
