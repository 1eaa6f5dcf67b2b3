"""`python -m rtil <command>`: convert, export, shards, info, demo, study. User errors print one line and exit 2."""

import argparse
import sys
from pathlib import Path

from rtil.cli_checks import ArgumentParser, Ranged, add_overwrite_argument, check_device, check_output_file
from rtil.data.shards import add_shards_arguments, run_shards
from rtil.errors import RtilError

COUNT = Ranged(int, 1)
INDEX = Ranged(int, 0)  # seeds, members


def _cmd_convert(args) -> None:
    check_output_file(args.output, args.overwrite, inputs=[args.input])
    if args.source == "rosinality":
        from rtil.importers.rosinality import convert_rosinality

        convert_rosinality(args.input, args.output, size=args.size, channel_multiplier=args.channel_multiplier,
                           channels=args.channels, mapping_layers=args.mapping_layers,
                           rtil_cut_points=args.rtil_cut_points)
    elif args.source == "nvlabs":
        from rtil.importers.nvlabs import convert_nvlabs

        convert_nvlabs(args.input, args.output)
    else:
        from rtil.importers.rtil_pggan import convert_rtil_pggan

        convert_rtil_pggan(args.input, args.output)
    print(f"wrote {args.output}")


def _cmd_export(args) -> None:
    from rtil.checkpoints import SAFETENSORS_SUFFIX, export_lightning_checkpoint

    if args.format == "safetensors" and not str(args.output).endswith(SAFETENSORS_SUFFIX):
        raise RtilError(f"--format safetensors writes a {SAFETENSORS_SUFFIX} file: name the output "
                        f"{Path(args.output).with_suffix(SAFETENSORS_SUFFIX)}")
    if args.format == "pt" and str(args.output).endswith(SAFETENSORS_SUFFIX):
        raise RtilError(f"--format pt writes a torch.save file: do not name it {SAFETENSORS_SUFFIX}")
    check_output_file(args.output, args.overwrite, inputs=[args.checkpoint])
    print(f"wrote {export_lightning_checkpoint(args.checkpoint, args.output)}")


def _cmd_fid(args) -> None:
    import itertools
    import json

    from tqdm import tqdm

    from rtil.atomic_files import json_safe, write_json_atomically
    from rtil.checkpoints import load_generator
    from rtil.config import build_family
    from rtil.evaluation.sample_quality import fid_kid, load_inception, real_image_batches
    from rtil.members import member_images, num_members

    # Every input is checked before the Inception weights are looked at, and those before anything is computed.
    check_device(args.device)
    if args.out:
        check_output_file(args.out, args.overwrite, inputs=[args.generator, args.data], what="--out")
    G = load_generator(args.generator, device=args.device)
    family = build_family(G.rtil)
    members = num_members(family)
    if not 0 <= args.member < members:
        raise RtilError(f"--member must be in 0..{members - 1} for this generator")
    real = real_image_batches(args.data, G.resolution, G.img_channels, args.batch_size, args.num_real,
                              report=lambda text: print(f"warning: {text}", file=sys.stderr))
    first = next(real, None)
    if first is None:
        raise RtilError(f"--data {args.data} holds no readable images")
    real = itertools.chain([first], real)
    extractor, why_not = load_inception(args.offline)

    record = {"generator": str(args.generator), "data": args.data, "member": args.member,
              "num_generated": args.num_gen}
    if args.data == "digits":
        from rtil.data.digits import digits_images
        from rtil.evaluation.digits_fd import digits_fd

        samples = member_images(G, family, args.member, min(args.num_gen, 1000), args.seed, noise_mode="random")
        record["digits_fd"] = digits_fd(samples.cpu(), digits_images("test", G.resolution, G.img_channels))
        print(f"digits Fréchet distance (vs the test digits, {samples.shape[0]} samples): {record['digits_fd']:.3f}")
    if extractor is None:
        record["fid"] = record["kid"] = f"unavailable: {why_not}"
        print(f"FID, KID: unavailable ({why_not})")
    else:
        with tqdm(total=args.num_gen, desc="generated", unit="img", disable=args.quiet) as bar:
            values = fid_kid(G, family, real, args.num_gen, extractor.to(args.device), args.member,
                             args.batch_size, args.seed, progress=bar.update)
        record.update(values)
        print(f"FID {values['fid']:.2f}, KID {values['kid_mean']:.4f} ± {values['kid_std']:.4f} "
              f"({values['num_generated']} generated vs {values['num_real']} real)")
    if args.out:
        write_json_atomically(Path(args.out), json_safe(record))
    else:
        print(json.dumps(json_safe(record)))


def _cmd_info(args) -> None:
    from rtil.checkpoints import read_generator_file

    rec = read_generator_file(args.path)
    print(f"family:     {rec['family']}")
    print(f"arch:       {rec['arch']}")
    print(f"rtil:       {rec.get('rtil')}")
    print(f"provenance: {rec.get('provenance')}")
    n = sum(v.numel() for v in rec["g_ema"].values())
    print(f"parameters+buffers (g_ema): {n:,}")


def _cmd_demo(args) -> None:
    from rtil.cli_checks import check_output_folder
    from rtil.demo import run_demo

    check_output_folder(args.out, args.overwrite)
    run_demo(args.out, seed=args.seed, train_kimg=args.train_kimg)
    if args.train_kimg == 0:
        print("--train-kimg 0: only step 1 ran (training and the sweep were skipped)")


def _cmd_study(args) -> None:
    from rtil.study.config import load_run_config
    from rtil.study.runner import STAGES, run_items, run_study
    from rtil.study.stages import stage_items

    if args.run_config:  # one worker process of a stage (started by the study itself)
        cfg = load_run_config(args.run_config)
        run_items(cfg, args.stage, stage_items(cfg, args.stage), args.workers)
        return
    if args.generator is not None:
        _own_generator_study(args)
        return
    own = [f"--{name.replace('_', '-')}" for name in OWN_OPTIONS if getattr(args, name) not in (None, [])]
    if args.config is None or own:
        raise RtilError("study takes --config FILE (a study config), or --generator FILE --data DIR --out OUT "
                        "(does RTIL help your generator?)" + (f"; {own[0]} is an option of the second form" if own
                                                              else ""))
    stages = list(STAGES) if args.stage is None else [args.stage]
    only = [name for name in (args.only or "").split(",") if name] or None
    result = run_study(args.config, quick=args.quick, stages=stages, only=only, jobs=args.jobs)
    print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in result["seconds"].items()))


OWN_OPTIONS = ("data", "out", "kimg", "tasks", "methods", "seeds", "test", "validation_images", "test_images", "set")


def _own_generator_study(args) -> None:
    """python -m rtil study --generator FILE --data DIR --out OUT ...: rtil/study/own_generator.py."""
    from rtil.study.own_generator import DEFAULT_TASKS, OwnStudy, run_own_study

    if args.config is not None or args.stage is not None or args.only is not None:
        raise RtilError("--generator writes and runs its own study config: leave out --config, --stage and --only "
                        "(to resume or run a stage of it: python -m rtil study --config OUT/study.yaml ...)")
    missing = [option for option in ("data", "out") if getattr(args, option) is None]
    if missing:
        what = {"data": "the image folder it was trained on", "out": "a new or empty folder for the study"}
        raise RtilError(f"--generator needs --{missing[0]} ({what[missing[0]]})")
    options = OwnStudy(generator=args.generator, data=args.data, out=args.out, kimg=args.kimg or 20.0,
                       tasks=args.tasks or DEFAULT_TASKS, methods=args.methods, seeds=args.seeds or "0",
                       jobs=args.jobs or 1, quick=args.quick, test=args.test,
                       validation_images=args.validation_images or 32, test_images=args.test_images or 100,
                       sets=args.set or [])
    result = run_own_study(options)
    print("stage seconds: " + ", ".join(f"{k} {v:.0f}" for k, v in result["seconds"].items()))


def _channel_table(text: str) -> dict[int, int]:
    try:
        return {int(k): int(v) for k, v in (item.split(":") for item in text.split(","))}
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected RES:CH,RES:CH,... (e.g. 4:256,8:256), got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(prog="python -m rtil", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("convert", help="import a community checkpoint as an rtil generator file")
    p.add_argument("source", choices=["rosinality", "rtil-pggan", "nvlabs"], help="format of the input checkpoint")
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--size", type=COUNT, help="rosinality: output resolution (detected from the weights if omitted; "
                                            "given, it is checked against them)")
    p.add_argument("--channel-multiplier", type=COUNT, default=2, help="rosinality: channel multiplier (default 2)")
    p.add_argument("--channels", type=_channel_table, default=None,
                   help="rosinality: explicit channel table RES:CH,... (e.g. the RTIL authors' reduced table); "
                        "detected from the weights when omitted")
    p.add_argument("--mapping-layers", type=COUNT, default=None, help="rosinality: mapping depth (detected if omitted)")
    p.add_argument("--rtil-cut-points", type=INDEX, nargs="*", default=None,
                   help="rosinality: record the RTIL Gaussian family with these cut points (RTIL authors: 1 2 3 4)")
    add_overwrite_argument(p, "the output file")
    p.set_defaults(func=_cmd_convert)

    p = sub.add_parser("export", help="write the generator file of a Lightning training checkpoint")
    p.add_argument("checkpoint", help="a .ckpt written by train.py")
    p.add_argument("output", help="the generator file to write: .pt (torch.save, loads weights-only) or "
                                  ".safetensors (tensors + JSON metadata)")
    p.add_argument("--format", choices=["auto", "pt", "safetensors"], default="auto",
                   help="file format (default: from the output's name)")
    add_overwrite_argument(p, "the output file")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("shards", help="convert an image folder to webdataset shards")
    add_shards_arguments(p)
    p.set_defaults(func=run_shards)

    p = sub.add_parser("fid", help="FID and KID of a generator (fid50k_full by default), and the digits "
                                   "Fréchet distance on digits")
    p.add_argument("generator", help="exported generator file")
    p.add_argument("--data", default="digits", help="'digits', an image folder, or a shard pattern (.tar)")
    p.add_argument("--num-gen", type=Ranged(int, 2), default=50000, help="generated images (default 50000)")
    p.add_argument("--num-real", type=COUNT, default=None, help="real images (default: the whole data set)")
    p.add_argument("--member", type=INDEX, default=0, help="RTIL member to sample (default 0: the plain generator)")
    p.add_argument("--batch-size", type=COUNT, default=64)
    p.add_argument("--seed", type=INDEX, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--offline", action="store_true",
                   help=f"never download the Inception weights (also: {'RTIL_OFFLINE'}=1)")
    p.add_argument("--out", default=None, help="write the results to this JSON file")
    add_overwrite_argument(p, "the --out file")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_fid)

    p = sub.add_parser("info", help="describe an exported generator file")
    p.add_argument("path")
    p.set_defaults(func=_cmd_info)

    p = sub.add_parser("demo", help="build/export/reload both families; train vanilla and RTIL StyleGAN2 on digits; "
                                    "sweep ILO and mGANprior over compressed-sensing ratios")
    p.add_argument("--out", default="outputs/demo",
                   help="output folder (refused if it holds files, unless --overwrite)")
    add_overwrite_argument(p, "an earlier demo's files in --out")
    p.add_argument("--seed", type=INDEX, default=0)
    p.add_argument("--train-kimg", type=Ranged(float, 0), default=5.0,
                   help="thousands of images to train each digits StyleGAN2 for (0 skips training and the sweep)")
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("study", help="the vanilla-vs-RTIL study: train, export, tune, evaluate, report (resumable); "
                                     "or, with --generator, of your own generator")
    p.add_argument("--config", default=None, help="study config, e.g. configs/study/digits.yaml")
    p.add_argument("--quick", action="store_true", help="the same stages on the config's tiny 'quick' budget")
    p.add_argument("--stage", choices=["train", "export", "tune", "evaluate", "report"], default=None,
                   help="run only this stage (default: every stage, each skipping finished work)")
    p.add_argument("--jobs", type=COUNT, default=None,
                   help="worker processes (one thread each) instead of the config's `jobs`")
    p.add_argument("--only", default=None, metavar="COMPARISONS",
                   help="comma-separated comparisons (config names, or a snapshot comparison's expanded names) whose "
                        "work to do first; the other comparisons' work waits, and the report needs them all")
    own = p.add_argument_group("does RTIL help your generator? (instead of --config: writes OUT/study.yaml, runs "
                               "it)")
    own.add_argument("--generator", default=None, metavar="FILE",
                     help="a pretrained generator: rtil .pt/.safetensors/.ckpt, rosinality .pt, NVlabs .pkl, the RTIL "
                          "authors' PGGAN .pt")
    own.add_argument("--data", default=None, metavar="DIR", help="the image folder it was trained on (validation "
                                                                 "and test images are held out of it)")
    own.add_argument("--out", default=None, metavar="OUT", help="a new or empty folder (or one written before: resume)")
    own.add_argument("--kimg", type=Ranged(float, 0, open_low=True), default=None,
                     help="kimg to continue the generator in each arm (default 20)")
    own.add_argument("--tasks", default=None, help="TASK:PARAM,... (default cs:0.25,inpaint:0.5,sr:4)")
    own.add_argument("--methods", default=None,
                     help="solvers, comma-separated (default: ilo,csgm for a StyleGAN2, mganprior,csgm for a PGGAN)")
    own.add_argument("--seeds", default=None, help="one vanilla/RTIL pair per seed, e.g. 0,1 (default 0)")
    own.add_argument("--test", default=None, metavar="DIR", help="test images from this folder instead of held out "
                                                                 "of --data")
    own.add_argument("--validation-images", type=COUNT, default=None, help="images held out for tuning (default 32)")
    own.add_argument("--test-images", type=COUNT, default=None, help="test images (default 100)")
    own.add_argument("--set", action="append", default=None, metavar="KEY=VALUE",
                     help="a train.py setting of the derived training config, e.g. data.batch_size=8 (repeatable)")
    p.add_argument("--workers", type=COUNT, default=1, help=argparse.SUPPRESS)
    p.add_argument("--run-config", default=None, help=argparse.SUPPRESS)
    p.set_defaults(func=_cmd_study)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except RtilError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
