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


def _cmd_zeroshot(args) -> None:
    from cad2scan.zeroshot import run_zeroshot

    unseen = [name for name in args.unseen.split(",") if name.strip()] if args.unseen else None
    result = run_zeroshot(args.data, unseen, out_dir=args.out, seed=args.seed, smoke=args.smoke, overrides=args.set,
                          progress=not args.quiet)

    def number(value):
        return "-" if value is None else f"{value:.2f}"

    print(f"\nseen {', '.join(result['seen'])}: AmAP {number(result['AmAP_seen'])} "
          f"(chance {number(result['chance_AmAP_seen'])})")
    print(f"unseen {', '.join(result['unseen'])}: AmAP {number(result['AmAP_unseen'])} "
          f"(chance {number(result['chance_AmAP_unseen'])})")
    print(f"results: {Path(args.out) / 'zeroshot.md'} (and .json)")


def _cmd_view(args) -> None:
    import numpy as np

    from cad2scan.viewer.page import write_view
    from cad2scan.viewer.sources import view_document

    document = view_document(args.target, checkpoint=args.checkpoint or None, scan=args.scan or None,
                             samples=args.samples, categories=args.categories or None, labels=args.labels or None,
                             labels_as=args.labels_as, units=args.units, device=args.device,
                             max_voxels=args.max_voxels or None, mode=args.mode, class_name=args.class_name,
                             progress=not args.quiet)
    info = write_view(args.out, document, max_points=args.max_points, rng=np.random.default_rng(args.seed))
    for name, shown, total in info["scenes"]:
        note = "" if shown == total else f" (random subsample of {total}, seed {args.seed}; raise --max-points)"
        print(f"  {name}: {shown} points{note}")
    print(f"wrote {info['path']} ({info['bytes'] / 2**20:.1f} MiB; open it in any browser, no network needed)")


def _cmd_report(args) -> None:
    from cad2scan.report import write_report

    info = write_report(args.dir, args.out or None)
    for note in info["skipped"]:
        print(f"note: {note}")
    print(f"wrote {info['report']} and {len(info['plots'])} plot(s) for {', '.join(info['tables'])}")


def _cmd_render(args) -> None:
    from cad2scan.figures import render_scan
    from cad2scan.predict import select_device

    kinds = tuple(k.strip() for k in args.figures.split(",") if k.strip()) or None
    prototypes = None
    if args.prototypes:
        try:
            prototypes = [int(k) for k in args.prototypes.split(",") if k.strip()]
        except ValueError:
            raise Cad2ScanError(f"--prototypes must be comma-separated integers, got {args.prototypes!r}") from None
    classes = [c.strip() for c in args.classes.split(",") if c.strip()] or None
    manifest = render_scan(args.checkpoint, args.scan, args.out, labels=args.labels or None, labels_as=args.labels_as,
                           units=args.units, kinds=kinds, classes=classes, prototypes=prototypes,
                           num_prototypes=args.num_prototypes, width=args.width, height=args.height,
                           point_size=args.point_size, device=select_device(args.device))
    truth = "ground truth vs prediction" if manifest["ground_truth"] else "prediction only (no labels)"
    print(f"{manifest['points']} points, {truth}; wrote {len(manifest['files'])} figure(s) to {args.out} "
          f"in {manifest['seconds']:.1f} s: {', '.join(manifest['files'])}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cad2scan", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"cad2scan {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)

    def labels_arguments(p):
        p.add_argument("--labels", default="", help="per-point ground-truth labels (.npy, .txt or .ply with 'label')")
        p.add_argument("--labels-as", default="scene", choices=["scene", "class"],
                       help="--labels holds dataset label ids mapped by the category set (scene) or class indices")

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

    p = sub.add_parser("zeroshot", help="open-vocabulary text anchors: train on seen classes, score unseen ones "
                                        "from their names (zero-shot AP); needs pip install 'cad2scan[text]'")
    p.add_argument("--data", default="demo", choices=["demo", "scannet", "s3dis"],
                   help="data set (demo: the embedded data, generated into OUT/data when missing)")
    p.add_argument("--unseen", default="",
                   help="comma-separated target classes held out of training (default: "
                        "configs/categories/<set>_zeroshot.yaml, e.g. bathtub,toilet,sink)")
    p.add_argument("--out", default="zeroshot_out", help="output folder (default: zeroshot_out)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="tiny data and a few steps (numbers meaningless)")
    common(p)
    p.set_defaults(func=_cmd_zeroshot)

    p = sub.add_parser("view", help="write one self-contained HTML page (no network) showing a scan coloured by "
                                    "prediction / ground truth / class probability, or a run's training samples")
    p.add_argument("target", help="scan file or ScanNet/prepared scene folder, predictions .npz of `predict`, "
                                  "or run folder (config.yaml + model.safetensors)")
    p.add_argument("--out", default="view.html", help="HTML file to write (default: view.html)")
    p.add_argument("--checkpoint", default="", help="model to predict the scan with (scan targets)")
    p.add_argument("--scan", default="", help="the scan of a predictions .npz, or a scan to predict with a run's model")
    p.add_argument("--samples", type=int, default=0, help="run folder: show this many mixed training samples")
    labels_arguments(p)
    p.add_argument("--categories", default="", help="category set without a checkpoint (default: scannet11)")
    p.add_argument("--mode", default="", choices=["", "prediction", "ground_truth", "probability", "model",
                                                  "synthetic", "rgb", "height"], help="initial colour mode")
    p.add_argument("--class", dest="class_name", default="", help="initial class of the probability mode")
    p.add_argument("--max-points", type=int, default=300_000,
                   help="show at most this many points per scan (seeded random subsample; default 300000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsample")
    p.add_argument("--units", default=None, choices=["m", "cm", "mm", "in", "ft"])
    p.add_argument("--device", default="auto")
    p.add_argument("--max-voxels", type=int, default=2_000_000, help="tile prediction above this many voxels")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_cmd_view)

    p = sub.add_parser("report", help="Markdown report with plots (AmAP, per-class AP, PR curves) from an experiment "
                                      "or demo folder")
    p.add_argument("dir", help="folder of `cad2scan experiment` (results/*.json) or `cad2scan demo` (results.json), "
                               "or one results JSON file")
    p.add_argument("--out", default="", help="output folder (default: DIR/report)")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("render", help="PNG figures of one scan: ground truth vs prediction per class (Fig. 4) and "
                                      "prototype activation maps (Fig. 3B)")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--scan", required=True, help="prepared scene folder / scene .npz, ScanNet scene folder, S3DIS "
                                                 "room folder, or any scan file (then prediction only)")
    labels_arguments(p)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--figures", default="",
                   help="classes and/or prototypes, comma-separated (default: classes, plus prototypes when the "
                        "checkpoint has the convex hull; asking for prototypes without it is an error)")
    p.add_argument("--classes", default="", help="comma-separated target classes (default: those present)")
    p.add_argument("--prototypes", default="", help="comma-separated prototype indices, e.g. 3,17,42 "
                                                    "(default: the most used)")
    p.add_argument("--num-prototypes", type=int, default=4, help="how many most-used prototypes (default 4)")
    p.add_argument("--width", type=int, default=640, help="panel width in pixels")
    p.add_argument("--height", type=int, default=480, help="panel height in pixels")
    p.add_argument("--point-size", type=int, default=2, help="point size in pixels")
    p.add_argument("--units", default=None, choices=["m", "cm", "mm", "in", "ft"])
    p.add_argument("--device", default="auto")
    p.set_defaults(func=_cmd_render)
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
