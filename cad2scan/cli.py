"""The ``cad2scan`` command: parses arguments and calls library functions, nothing more."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

# Before torch loads: OpenMP threads sleep instead of spinning at barriers. Spinning threads
# make training on a CPU shared with other processes tens of times slower (see __main__.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from cad2scan import __version__  # noqa: E402
from cad2scan.errors import Cad2ScanError  # noqa: E402

log = logging.getLogger("cad2scan")


def _cmd_demo(args) -> None:
    from cad2scan.demo import METHODS, run_demo

    methods = args.methods.split(",") if args.methods else None
    unknown = [m for m in methods or [] if m not in METHODS]
    if unknown:
        raise Cad2ScanError(f"unknown demo method(s) {unknown} (known: {', '.join(METHODS)})")
    results = run_demo(args.out, seed=args.seed, methods=methods, overrides=args.set, progress=not args.quiet,
                       smoke=args.smoke)
    print(f"\nresults: {Path(args.out) / 'results.json'}")
    for name, row in results["methods"].items():
        print(f"  {name:9s} AmAP {row['AmAP']:.2f}  mIoU {row['mIoU']:.2f}")


def _cmd_generate(args) -> None:
    from cad2scan.synth.generate import generate_demo_dataset

    generate_demo_dataset(args.out, seed=args.seed, progress=not args.quiet)
    print(f"demo dataset written to {args.out}")


def _cmd_prepare(args) -> None:
    from cad2scan.prepare_cli import run_prepare

    run_prepare(args)


def _cmd_train(args) -> None:
    from cad2scan.config import load_config
    from cad2scan.train.loop import train

    cfg = load_config(args.config, args.set)
    run_dir = Path(args.out) if args.out else Path("runs") / cfg.name
    result = train(cfg, run_dir, progress=not args.quiet, resume=args.resume)
    if result.rank == 0:
        print(f"checkpoint: {result.checkpoint} ({result.steps} steps, {result.seconds:.0f} s, "
              f"final loss {result.final_loss:.4f})")


def _cmd_evaluate(args) -> None:
    from cad2scan.classes import load_category_set
    from cad2scan.config import config_from_dict, config_to_dict, load_raw_config, merge_dicts, parse_overrides
    from cad2scan.eval.evaluate import evaluate_scenes
    from cad2scan.eval.tables import format_table, write_results_json
    from cad2scan.predict import select_device
    from cad2scan.train.checkpoint import load_checkpoint
    from cad2scan.train.loop import prepare_eval_scenes

    device = select_device(args.device)
    loaded = load_checkpoint(args.checkpoint, device)
    raw = config_to_dict(loaded.config)
    if args.config:
        raw = merge_dicts(raw, load_raw_config(args.config))
    cfg = config_from_dict(merge_dicts(raw, parse_overrides(args.set)), "evaluate")
    categories = load_category_set(cfg.data.categories)
    if categories.names != loaded.class_names:
        raise Cad2ScanError(f"checkpoint classes {loaded.class_names} differ from category set "
                            f"{cfg.data.categories!r} ({categories.names})")
    eval_scenes = prepare_eval_scenes(cfg, progress=not args.quiet)
    if not eval_scenes:
        raise Cad2ScanError("no evaluation scans: set data.eval_scenes (e.g. --set data.eval_scenes=val)")
    result = evaluate_scenes(loaded.net, eval_scenes, categories, cfg.data.voxel_size, device,
                             progress=not args.quiet)
    name = Path(args.checkpoint).parent.name or "model"
    print(format_table({name: result}, categories.target_names))
    if args.out:
        write_results_json(args.out, {name: result}, meta={"checkpoint": str(args.checkpoint)})
        print(f"results: {args.out}")


def _cmd_predict(args) -> None:
    from cad2scan.io.predictions import write_predictions
    from cad2scan.io.scans import read_scan
    from cad2scan.predict import predict_scan, select_device
    from cad2scan.train.checkpoint import load_checkpoint

    device = select_device(args.device)
    loaded = load_checkpoint(args.checkpoint, device)
    scan = read_scan(args.scan, units=args.units)
    probabilities, report = predict_scan(loaded.net, scan["coord"], loaded.config.data.voxel_size, device,
                                         max_voxels=args.max_voxels or None, progress=True)
    print(f"{report['points']} points, {report['voxels']} voxels, {report['tiles']} tile(s), "
          f"{report['seconds']:.2f} s, peak memory {report['peak_memory_bytes'] / 2**20:.0f} MiB "
          f"({report['peak_memory_kind']})")
    outputs = args.out or [str(Path(args.scan).with_suffix(".pred.npz"))]
    for out in outputs:
        write_predictions(out, scan["coord"], probabilities, loaded.class_names)
        print(f"wrote {out}")
    counts = probabilities.argmax(axis=1)
    summary = {name: int((counts == i).sum()) for i, name in enumerate(loaded.class_names)}
    print("points per predicted class: " + json.dumps(summary))


def _cmd_experiment(args) -> None:
    from cad2scan.experiments import describe_registry, run_experiment

    if args.list or not args.name:
        print(describe_registry())
        return
    result = run_experiment(args.name, data=args.data, out_dir=args.out, seed=args.seed, smoke=args.smoke,
                            overrides=args.set, progress=not args.quiet, retrain=args.retrain)
    print(f"\nresults: {Path(args.out) / 'results' / (result['meta']['table'] + '.md')} (and .json)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cad2scan", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"cad2scan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a config value, e.g. train.lr=0.0005 (repeatable)")

    p = sub.add_parser("demo", help="generate the embedded data, train baseline / PDA / PDA+FA, compare")
    p.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--methods", default="", help="comma-separated subset of baseline,pda,pda_fa")
    p.add_argument("--smoke", action="store_true",
                   help="tiny data and a few steps: checks the installation in about a minute (numbers meaningless)")
    common(p)
    p.set_defaults(func=_cmd_demo)

    p = sub.add_parser("generate", help="write the embedded synthetic dataset (CAD models + scanned rooms)")
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_generate)

    p = sub.add_parser("prepare", help="convert ModelNet40 / ScanNet / S3DIS (or what a config needs) into the cache")
    from cad2scan.prepare_cli import add_prepare_arguments

    add_prepare_arguments(p)
    common(p)
    p.set_defaults(func=_cmd_prepare)

    p = sub.add_parser("train", help="train from a config")
    p.add_argument("--config", required=True, help="preset name (scannet, s3dis, demo) or YAML file")
    p.add_argument("--out", default="", help="run folder (default: runs/<name>)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the newest checkpoint in the run folder (start afresh when there is none)")
    common(p)
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="per-class AP / AmAP / mIoU of a checkpoint on labelled scans")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--config", default="", help="config whose data section to use (default: the checkpoint's)")
    p.add_argument("--out", default="", help="write results JSON here")
    p.add_argument("--device", default="auto")
    common(p)
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("predict", help="class probabilities for any scan file (.ply .npy .npz .txt .xyz .pcd .las)")
    p.add_argument("scan")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out", action="append", default=[], help="FILE.npz and/or FILE.ply (repeatable)")
    p.add_argument("--units", default=None, choices=["m", "cm", "mm", "in", "ft"],
                   help="units of the scan (default: detect)")
    p.add_argument("--device", default="auto")
    p.add_argument("--max-voxels", type=int, default=2_000_000,
                   help="above this many voxels the scan is processed in overlapping xy tiles with identical "
                        "results and bounded memory (about 3 KB per voxel); 0 = never tile")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("experiment", help="run a table of the paper (table1, table5) or one row: train, evaluate, "
                                          "write results/<table>.md/.json next to the paper's numbers")
    p.add_argument("name", nargs="?", default="", help="table, row or preset name (none or --list: list them)")
    p.add_argument("--list", action="store_true", help="list the tables and rows")
    p.add_argument("--data", default="demo", choices=["demo", "scannet", "s3dis"],
                   help="data set (demo: the embedded data, generated into OUT/data when missing)")
    p.add_argument("--out", default="experiments_out", help="output folder (default: experiments_out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="tiny data and a few steps per row (numbers meaningless)")
    p.add_argument("--retrain", action="store_true", help="train rows again even when a finished identical run exists")
    common(p)
    p.set_defaults(func=_cmd_experiment)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        args.func(args)
    except Cad2ScanError as error:
        print(f"cad2scan: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("cad2scan: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
