"""The training command line (LightningCLI); `train.py` at the repository root calls `main`."""

import logging
import re
import sys
import warnings
from pathlib import Path

from lightning_fabric.utilities.seed import seed_everything
from pytorch_lightning.cli import LightningArgumentParser, LightningCLI
from pytorch_lightning.loggers import WandbLogger
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from rtil.cli_checks import SEED_RANGE, check_ranges
from rtil.data import sigterm
from rtil.data.datamodule import GanDataModule
from rtil.errors import RtilError
from rtil.training.base import GanModule
from rtil.training.callbacks import ExportGenerator, KimgCheckpoint, SampleGrid, SampleQuality, Throughput

WANDB_MODES = ("offline", "online", "disabled")
# What the Trainer raises for a bad value of its options (max_steps -5, accelerator 'bogus', devices -3); it only
# checks and stores them, as every class it is given is built before it.
TRAINER_ERRORS = (MisconfigurationException, ValueError, TypeError)
# rtil's own option groups of the command and their classes (callbacks; each declares its numeric settings' ranges).
CALLBACK_GROUPS = {"checkpoint": KimgCheckpoint, "samples": SampleGrid, "quality": SampleQuality,
                   "throughput": Throughput, "export": ExportGenerator}
# Model settings set from the data's (linked arguments): target -> source.
LINKED = {"model.init_args.resolution": "data.resolution", "model.init_args.img_channels": "data.channels"}


class QuietWandbLogger(WandbLogger):
    """Lightning's WandbLogger without wandb's terminal output that a user cannot act on: offline, wandb prints
    nothing (no banner, run summary or sync hints: the run's files are in <default_root_dir>/wandb, `wandb sync`
    uploads them); online, only what is essential (the run's address). wandb does not look for a git repository
    or save the code (a run's root is an output folder, not a clone), does not capture the console, and is not
    given Lightning's `anonymous=None`, which wandb warns about as a deprecated setting."""

    def __init__(self, *args, offline: bool = False, **kwargs):
        import wandb

        kwargs.setdefault("settings", wandb.Settings(silent=offline, quiet=True, console="off", disable_git=True,
                                                     disable_code=True, save_code=False))
        super().__init__(*args, offline=offline, **kwargs)
        if self._wandb_init.get("anonymous") is None:
            self._wandb_init.pop("anonymous", None)


class _DropLightningTips(logging.Filter):
    """Lightning's advertisement for its cloud logger, logged at every Trainer's start whatever its loggers."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("💡 Tip: For seamless cloud logging")


def quiet_dependencies() -> None:
    """Silence, precisely, the dependencies' output a user of the training command cannot act on (each by its
    message and where it comes from; nothing else is filtered)."""
    warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # the EMA generator is eval
    # Lightning 2.6 calls isinstance(treespec, LeafSpec), which torch 2.14 deprecates: harmless, nothing to act on.
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated",
                            category=FutureWarning, module=r"pytorch_lightning\.utilities\._pytree")
    # LightningCLI's own calls of jsonargparse APIs that jsonargparse deprecates (e.g. add_instantiator): Lightning's
    # to change, nothing a user can act on; Python hides them by default, a caller's "always" filter would not.
    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"pytorch_lightning\.cli")
    # A new run never starts in a folder with checkpoints (check_run_folder): this only comes with a resume of it.
    warnings.filterwarnings("ignore", message=r"Checkpoint directory .* exists and is not empty",
                            module=r"pytorch_lightning\.callbacks\.model_checkpoint")
    # Lightning logs its tip through lightning_utilities' rank_zero `log`, which is one of these two loggers.
    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropLightningTips) for f in logger.filters):
            logger.addFilter(_DropLightningTips())


# jsonargparse's error for a bad value of a class-path option (--model.init_args.X), which tries the class and None
_CLASS_PATH_ERROR = re.compile(r'Parser key "(?P<key>[\w.]+)": Does not validate against any of the Union subtypes .*? '
                               r"- Problem with given class_path '(?P<cls>[\w.]+)': (?P<problem>.*?) "
                               r"- Expected a <class 'NoneType'>")


class OneLineErrorParser(LightningArgumentParser):
    """Argument errors as one line and a hint, instead of the usage of every option (dozens of lines); a linked
    model setting (LINKED) given with another value than the data's is such an error."""

    def _parse_common(self, cfg, *args, **kwargs):
        # jsonargparse sets the linked settings from the data's in here, silently replacing a value given for them;
        # before, `cfg` holds only what was given (the class's defaults are added in here too).
        given = {target: cfg[target] for target in LINKED if target in cfg}
        cfg = super()._parse_common(cfg, *args, **kwargs)
        for target, value in given.items():
            if target in cfg and value != cfg[target]:
                self.error(f"--{target} {value} differs from --{LINKED[target]} {cfg[target]}: the model's setting "
                           f"is the data's; give --{LINKED[target]} instead")
        return cfg

    def error(self, message: str, ex: Exception | None = None):
        if not self.exit_on_error:
            return super().error(message, ex)
        text = " ".join(str(message).split())
        match = _CLASS_PATH_ERROR.match(text)
        if match:  # the class's problem, named as on the command line, without the None alternative
            inner = re.match(r'Parser key "([\w.]+)": (.*)', match["problem"])
            text = (f'Parser key "{match["key"]}.init_args.{inner[1]}": {inner[2]}' if inner
                    else f"{match['key']} {match['cls']}: {match['problem']}")
        text = text if len(text) <= 400 else text[:400] + " ..."
        sys.stderr.write(f"error: {text} (see `python train.py fit --help`)\n")
        sys.exit(2)


class RtilCLI(LightningCLI):
    def add_arguments_to_parser(self, parser):
        for target, source in LINKED.items():
            parser.link_arguments(source, target)
        for group, callback in CALLBACK_GROUPS.items():
            parser.add_lightning_class_args(callback, group)
        parser.add_argument("--wandb", default="offline", choices=WANDB_MODES,
                            help="Weights & Biases logging: offline (default, no account or network), online, "
                                 "disabled")
        parser.add_argument("--run_name", default=None,
                            help="name of the run's folder (default: the config file's name, plus _vanilla when the "
                                 "RTIL family is switched off), where --ckpt_path last looks")
        parser.add_argument("--init_from", default=None,
                            help="start a new run from the weights of a pretrained generator: an rtil .ckpt "
                                 "(G, G_ema, D), an rtil generator file (.pt, .safetensors), a rosinality StyleGAN2 "
                                 ".pt, an NVlabs StyleGAN2-ADA .pkl (read without running it) or the RTIL authors' "
                                 "PGGAN .pt; the config must describe the same networks. Optimisers, the kimg clock "
                                 "and schedules start fresh; the RTIL family may differ from the file's. Not with "
                                 "--ckpt_path, which resumes a run exactly")

    def parse_arguments(self, parser, args):
        # Called with `args` (the demo, python -m rtil demo ...), the process's own arguments belong to another
        # command: Lightning would warn that both were given. Only while parsing (a DDP launch re-runs sys.argv).
        argv = sys.argv
        check_config_files(sys.argv[1:] if args is None else args)
        if args is not None:
            sys.argv = sys.argv[:1]
        try:
            super().parse_arguments(parser, args)
        finally:
            sys.argv = argv
        subcommand = self.config.get("subcommand")
        check_option_ranges(self.config[subcommand] if subcommand else self.config)

    def before_instantiate_classes(self):
        cfg = self.config[self.subcommand] if self.subcommand else self.config
        root = cfg.trainer.default_root_dir or "outputs/train"
        cfg.run_name = cfg.run_name or default_run_name(cfg)
        if cfg.trainer.enable_progress_bar is not False:
            cfg.trainer.callbacks = list(cfg.trainer.callbacks or []) + [
                {"class_path": "rtil.training.callbacks.KimgProgressBar"}]
        if cfg.checkpoint.dirpath is None:
            # One folder per run name (not per log version), so that `--ckpt_path last` finds last.ckpt.
            cfg.checkpoint.dirpath = str(Path(root) / cfg.run_name / "checkpoints")
        if cfg.trainer.logger in (None, True):
            loggers = [{"class_path": "pytorch_lightning.loggers.CSVLogger",
                        "init_args": {"save_dir": root, "name": cfg.run_name}}]
            if cfg.wandb != "disabled":
                loggers.append({"class_path": "rtil.training.cli.QuietWandbLogger",
                                "init_args": {"save_dir": root, "name": cfg.run_name, "project": "rtil",
                                              "offline": cfg.wandb == "offline"}})
            cfg.trainer.logger = loggers

    def instantiate_classes(self):
        # Warnings while the classes are built (e.g. the deprecated flat RTIL keys) are shown once they are built, or
        # not at all when a setting is one of our errors: that error is then the only line.
        error = None
        with warnings.catch_warnings(record=True) as caught:
            try:
                super().instantiate_classes()
            except Exception as e:  # re-raised below
                error = e
        if error is None or _rtil_error_in(error) is None:
            for w in caught:
                warnings.showwarning(w.message, w.category, w.filename, w.lineno, w.file, w.line)
        if error is not None:
            raise error

    def instantiate_trainer(self, **kwargs):
        # The Trainer prints Lightning's start-up lines (GPU available, ...): every check that can refuse the
        # command comes before it, so that an error is the only output.
        trainer_settings = {**self._get(self.config_init, "trainer", default={}), **kwargs}
        check_manual_optimization_options(trainer_settings.get("accumulate_grad_batches", 1),
                                          trainer_settings.get("gradient_clip_val"))
        init_lines = self._apply_init_from()
        # Lightning checks its own options here; a bad value (--trainer.max_steps -5) is one error line.
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except TRAINER_ERRORS as e:
            raise RtilError(f"bad --trainer option: {' '.join(str(e).split())}") from e
        if trainer.is_global_zero:
            if self._seed is not None:  # the line Lightning's seed_everything prints, now that all checks passed
                logging.getLogger("lightning_fabric.utilities.seed").info(f"Seed set to {self._seed}")
            if init_lines:
                print("\n".join(init_lines))
        return trainer

    def _apply_init_from(self) -> list[str]:
        """Load the --init_from file's weights into the model (none given: nothing); the lines to show."""
        init_from = self.config[self.subcommand].get("init_from") if self.subcommand else None
        if init_from is None:
            return []
        from rtil.training.init_from import apply_init_source, read_init_source

        h = self.model.hparams
        source = read_init_source(init_from, mbstd_group_size=h.get("mbstd_group_size", 4),
                                  mapping_lr_mul=h.get("mapping_lr_mul", 0.01))
        return apply_init_source(self.model, source)

    def _set_seed(self):
        # Lightning's, without its "Seed set to N" line, which instantiate_trainer shows once every setting is
        # checked (an error is then the only output). The seed's range is checked with the other options.
        seed = self._get(self.config, "seed_everything")
        self._seed = None
        if seed is False:
            return
        self._seed = seed_everything(None if seed is True else seed, workers=True, verbose=False)
        (self.config[self.subcommand] if self.subcommand else self.config)["seed_everything"] = self._seed

    def _parse_ckpt_path(self):
        # Lightning reads the checkpoint's hyper-parameters here, before anything else: check the file first.
        subcommand = self.config.get("subcommand")
        if subcommand:
            cfg = self.config[subcommand]
            if cfg.get("init_from") is not None and cfg.get("ckpt_path") is not None:
                raise RtilError("--init_from and --ckpt_path cannot be combined: --ckpt_path resumes one of our runs "
                                "exactly, --init_from starts a new run from a file's weights; give one of them")
            if cfg.get("init_from") is not None and subcommand != "fit":
                raise RtilError(f"--init_from is an option of `train.py fit`, not of `{subcommand}`")
            root = cfg.trainer.default_root_dir or "outputs/train"
            folder = cfg.checkpoint.dirpath or Path(root) / (cfg.run_name or default_run_name(cfg)) / "checkpoints"
            path = check_ckpt_path(cfg.get("ckpt_path"), Path(folder))
            if subcommand == "fit":
                check_run_folder(Path(folder), path, dirpath_given=cfg.checkpoint.dirpath is not None)
            if path is not None:
                check_resume_settings(path, cfg.model)
        # Lightning's own version would now replace the command's model settings by the checkpoint's, silently
        # (a lower lr, or another channel count, would be ignored); check_resume_settings decides instead.


def check_manual_optimization_options(accumulate_grad_batches, gradient_clip_val) -> None:
    """Our GAN modules step their optimizers themselves (manual optimization), which Lightning refuses to combine
    with its gradient accumulation or clipping only when fit starts: refuse them here, in one line (the Trainer's
    settings, before it is built)."""
    if accumulate_grad_batches != 1:
        raise RtilError(f"--trainer.accumulate_grad_batches {accumulate_grad_batches}: rtil's GAN training steps its "
                        f"optimizers itself, so Lightning cannot accumulate its gradients; leave it at 1 (for a "
                        f"larger batch, raise --data.batch_size)")
    if gradient_clip_val:  # None and 0 clip nothing
        raise RtilError(f"--trainer.gradient_clip_val {gradient_clip_val}: rtil's GAN training steps its "
                        f"optimizers itself, so Lightning cannot clip its gradients; leave it unset")


def check_config_files(argv) -> None:
    """Every `--config FILE` of a command line is valid YAML, or one error line naming the file, line and column
    (jsonargparse names an invalid file "<unicode string>"). `argv`: a list of words (anything else is left to
    jsonargparse)."""
    from rtil.config import read_yaml_file

    if not isinstance(argv, (list, tuple)):
        return
    words = [str(word) for word in argv]
    files = [value for word, value in zip(words, words[1:], strict=False) if word == "--config"]
    files += [word[len("--config="):] for word in words if word.startswith("--config=")]
    for file in files:
        if Path(file).is_file():
            read_yaml_file(file, empty_ok=True)


def check_run_folder(checkpoint_dir: Path, resume: Path | None, dirpath_given: bool = False) -> None:
    """A new run (no --ckpt_path, or a checkpoint of another folder) needs a checkpoint folder without checkpoints:
    Lightning would write its own beside an earlier run's (as *-v1.ckpt) and leave last.ckpt to that run, which
    `--ckpt_path last` would then resume."""
    found = sorted(p.name for p in checkpoint_dir.glob("*.ckpt")) if checkpoint_dir.is_dir() else []
    if not found or (resume is not None and resume.resolve().parent == checkpoint_dir.resolve()):
        return
    names = ", ".join(found[:2]) + (f" and {len(found) - 2} more" if len(found) > 2 else "")
    start = f"--ckpt_path {resume} is not in this run's folder: " if resume is not None else ""
    other = ("another --checkpoint.dirpath" if dirpath_given
             else "a new --run_name or another --trainer.default_root_dir")
    raise RtilError(f"{start}{checkpoint_dir} already holds an earlier run's checkpoints ({names}); a new run would "
                    f"write its own beside them and leave last.ckpt to that run: choose {other}, or resume that run "
                    f"with --ckpt_path last")


def check_option_ranges(cfg) -> None:
    """Every numeric option of the command within the range its class declares (RANGES), checked right after
    parsing and named as on the command line; the classes check their arguments again when used from Python."""
    seed = cfg.get("seed_everything")
    if seed is not None and not isinstance(seed, bool) and not SEED_RANGE.contains(seed):
        raise RtilError(f"seed_everything must be {SEED_RANGE.describe()} (or true or false), got {seed}")
    check_ranges(GanDataModule.RANGES, cfg.data, prefix="data.")
    check_ranges(model_class(cfg.model.class_path).RANGES, cfg.model.init_args, prefix="model.init_args.")
    for group, callback in CALLBACK_GROUPS.items():
        check_ranges(callback.RANGES, cfg[group], prefix=f"{group}.")


def model_class(class_path: str) -> type[GanModule]:
    """The training module class of a config's `model.class_path`."""
    import importlib

    module_name, _, class_name = str(class_path).rpartition(".")
    return getattr(importlib.import_module(module_name), class_name)


def default_run_name(cfg) -> str:
    """The run's folder name when --run_name is not given: the (last) config file's name, or the model class, plus
    "_vanilla" when the RTIL family is off, so the README's vanilla and RTIL runs do not share checkpoints."""
    configs = cfg.get("config") or []
    name = Path(str(configs[-1])).stem if configs else cfg.model.class_path.rsplit(".", 1)[-1].lower()
    rtil = model_settings(cfg.model).get("rtil")
    return f"{name}_vanilla" if not rtil else name


def model_settings(model, saved: dict | None = None) -> dict:
    """The model's settings (`saved`, a checkpoint's hyper-parameters, or else the command's `model.init_args`) with
    the RTIL family in its normalised nested form `rtil` (the deprecated flat keys folded in, see
    rtil.training.rtil_settings), so that settings of either form compare."""
    from rtil.training.rtil_settings import normalise_settings

    if saved is not None:
        settings = dict(saved)
    else:
        args = model.init_args
        settings = args.as_dict() if hasattr(args, "as_dict") else dict(args)
    try:
        kind = getattr(model_class(model.class_path), "rtil_kind", None)
    except (ImportError, AttributeError, ValueError):
        kind = None
    return normalise_settings(settings, kind) if kind is not None else settings


# Model settings a resumed run may change (the command line wins over the checkpoint); every other one must
# equal the checkpoint's, as they define the networks or the RTIL family.
RESUMABLE_CHANGES = {"lr", "betas", "total_kimg", "r1_gamma", "r1_interval", "pl_weight", "pl_interval",
                     "pl_batch_shrink", "pl_decay", "style_mixing_prob", "ema_kimg", "ema_rampup", "ema_beta",
                     "gp_lambda", "drift", "member_weighting", "member_lambda", "member_sampling"}


def check_resume_settings(ckpt_path: Path, model) -> None:
    """Refuse a resume whose model settings differ from the checkpoint's in a way the checkpoint cannot follow;
    print the safe changes that will apply."""
    from rtil.checkpoints import safe_torch_load

    saved = dict(safe_torch_load(ckpt_path, "Lightning checkpoint", mmap=True).get("hyper_parameters") or {})
    saved_class = saved.pop("_class_path", None)
    if saved_class and saved_class != model.class_path:
        raise RtilError(f"--ckpt_path {ckpt_path} holds a {saved_class}, not a {model.class_path}")
    # The RTIL family is compared in its nested form: a checkpoint of an earlier release holds the flat keys.
    saved, current = model_settings(model, saved), model_settings(model)
    differs = {k: (saved[k], current[k]) for k in saved
               if not k.startswith("_") and k in current and _plain(saved[k]) != _plain(current[k])}
    fixed = {k: v for k, v in differs.items() if k not in RESUMABLE_CHANGES}
    if fixed:
        detail = ", ".join(f"{k}: checkpoint {a!r}, now {b!r}" for k, (a, b) in sorted(fixed.items()))
        raise RtilError(f"--ckpt_path {ckpt_path} was trained with other settings that a resume cannot change "
                        f"({detail}); give the checkpoint's values, or start a new run")
    if differs:
        print("resuming with changed settings: " + ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in differs.items()))


def _plain(value):
    if isinstance(value, dict):  # keys as text: a checkpoint's hyper-parameters hold channel_table's as '4', '8'
        return {str(k): _plain(v) for k, v in value.items()}
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def check_ckpt_path(ckpt_path: str | None, checkpoint_dir: Path) -> Path | None:
    """The checkpoint file a resume reads (None without --ckpt_path). A resume that cannot work is a clear error
    before anything starts (Lightning would train from scratch when 'last' finds nothing, or fail with a
    traceback on a missing, truncated or foreign file)."""
    if ckpt_path is None:
        return None
    if ckpt_path == "last":
        if not (checkpoint_dir / "last.ckpt").is_file():
            raise RtilError(f"--ckpt_path last: there is no {checkpoint_dir / 'last.ckpt'} to resume from (check "
                            f"--run_name and --trainer.default_root_dir, or leave out --ckpt_path to start afresh)")
        ckpt_path = str(checkpoint_dir / "last.ckpt")
    path = Path(ckpt_path)
    if not path.is_file():
        raise RtilError(f"--ckpt_path {ckpt_path}: no such checkpoint file")
    import zipfile

    if not zipfile.is_zipfile(path):
        raise RtilError(f"--ckpt_path {ckpt_path}: not a Lightning checkpoint (truncated, or another format)")
    from rtil.checkpoints import safe_torch_load

    ckpt = safe_torch_load(path, "Lightning checkpoint", mmap=True)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "rtil_generator" not in ckpt:
        raise RtilError(f"--ckpt_path {ckpt_path}: not an rtil training checkpoint (a generator file? those are "
                        f"for inversion; training resumes from the checkpoints/ folder)")
    return path


def _rtil_error_in(error: BaseException) -> RtilError | None:
    """The RtilError that caused `error` (jsonargparse and Lightning wrap the errors our classes raise)."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, RtilError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def build_cli(args=None, cli_class: type[RtilCLI] = RtilCLI) -> RtilCLI:
    """The training CLI as `main` runs it: built, parsed, instantiated and run (`cli_class`: RtilCLI or a subclass,
    e.g. a test's that stops once the parser is built)."""
    # auto_configure_optimizers=False: the modules own their two optimisers (G and D); Lightning's
    # --optimizer / --lr_scheduler options would silently replace them.
    return cli_class(GanModule, GanDataModule, subclass_mode_model=True, args=args, auto_configure_optimizers=False,
                     parser_class=OneLineErrorParser,
                     save_config_kwargs={"overwrite": True},
                     trainer_defaults={"max_epochs": -1, "use_distributed_sampler": False, "log_every_n_steps": 10,
                                       "default_root_dir": "outputs/train"})


def main(args=None) -> RtilCLI:
    """Run the training CLI (`args` as on the command line; None reads sys.argv). Returns the CLI
    object (its `.trainer` and `.model`) for programmatic use; user errors exit with status 2."""
    quiet_dependencies()
    # Python hides DeprecationWarnings outside __main__; the deprecated flat RTIL keys should be seen.
    warnings.filterwarnings("default", category=DeprecationWarning, message="rtil_")
    previous, sigterm.force_exit_seconds = sigterm.force_exit_seconds, 10.0  # a SIGTERM during a data wait ends
    try:  # the process even if clean-up hangs; only while this command runs (not after, in a calling process)
        cli = build_cli(args)
    except sigterm.TerminatedWhileReading as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(sigterm.EXIT_STATUS)
    except Exception as e:  # our own errors, however deeply wrapped, are one line and exit status 2
        cause = _rtil_error_in(e)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        sys.exit(2)
    finally:
        sigterm.force_exit_seconds = previous
    finish_wandb_run(cli.trainer)
    return cli


def finish_wandb_run(trainer) -> None:
    """Close the run's Weights & Biases run, so that a second training in the same process (the demo trains two)
    gets its own run instead of logging into this one."""
    if any(isinstance(logger, WandbLogger) for logger in trainer.loggers):
        import wandb

        wandb.finish()


if __name__ == "__main__":  # python -m rtil.training.cli fit ... (what train.py runs; the study's workers use it)
    main()
