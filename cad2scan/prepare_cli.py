"""``cad2scan prepare``: convert a real dataset (or everything a config needs) into the cache once.

    cad2scan prepare modelnet40 --root ModelNet40 --out CACHE [--split train,test]
    cad2scan prepare scannet --root ScanNet --out CACHE [--split train,val] [--format scannet_npy]
    cad2scan prepare s3dis --root Stanford3dDataset_v1.2_Aligned_Version --out CACHE
    cad2scan prepare --config scannet --set data.cad_root=... --set data.scene_root=...

Settings (points per model, voxel size, which scans) come from the dataset's preset config
(``configs/scannet.yaml`` / ``configs/s3dis.yaml``, the paper's setting) and ``--set``
overrides, so that a later ``cad2scan train --config <preset> --set data.cache_dir=CACHE``
finds every item already prepared.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cad2scan.errors import ConfigError

DATASETS = ("modelnet40", "scannet", "s3dis")
_PRESET = {"modelnet40": "scannet", "scannet": "scannet", "s3dis": "s3dis"}
_ROLES = {"train": "train", "val": "eval", "eval": "eval"}


def add_prepare_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``cad2scan prepare`` (``--quiet`` and ``--set`` are added by the caller)."""
    parser.add_argument("dataset", nargs="?", choices=DATASETS,
                        help="dataset to convert (or use --config to prepare what a config needs)")
    parser.add_argument("--root", default="", help="dataset folder: ModelNet40 (<class>/<split>/*.off), ScanNet "
                        "(scans/ + scannetv2_<split>.txt, or a folder of *_vert.npy exports), S3DIS (Area_N/)")
    parser.add_argument("--out", default="", help="cache folder (with --config: overrides data.cache_dir)")
    parser.add_argument("--split", default="", help="modelnet40: CAD splits, e.g. train,test (default train); "
                        "scannet/s3dis: train (unlabelled training scans, one point per voxel) and/or val "
                        "(labelled evaluation scans, every point); default train,val. Which scans: "
                        "--set data.train_scenes=... / data.eval_scenes=... (split name/file, 'all', areas)")
    parser.add_argument("--format", default="auto", choices=["auto", "scannet", "scannet_npy"],
                        help="ScanNet layout: scans/<scene>/ (scannet) or *_vert.npy + *_sem_label.npy exports "
                        "(scannet_npy); default: detect")
    parser.add_argument("--config", default="", help="instead of a dataset: a preset name or YAML file; "
                        "prepares its CAD models, training and evaluation scans")
    parser.add_argument("--workers", type=int, default=None, help="worker processes (default: cores, max 8)")
    parser.add_argument("--verify", action="store_true",
                        help="re-hash every source and cached file (default: trust unchanged size + mtime)")


def run_prepare(args: argparse.Namespace) -> list:
    """Run ``cad2scan prepare``; prints a summary (bad files included); returns the reports."""
    from cad2scan.prepare import collect_reports, default_workers

    workers = default_workers() if args.workers is None else max(1, args.workers)
    progress = not getattr(args, "quiet", False)
    overrides = list(getattr(args, "set", []) or [])
    with collect_reports() as reports:
        if args.config:
            if args.dataset or args.root:
                raise ConfigError("give either a dataset with --root/--out or --config, not both "
                                  "(with --config set paths with --set data.cad_root=... data.scene_root=...)")
            cache = _prepare_config(args.config, overrides, args.out, workers, progress, args.verify)
        else:
            if not args.dataset:
                raise ConfigError("name a dataset (modelnet40, scannet, s3dis) or give --config")
            if not args.root or not args.out:
                raise ConfigError(f"cad2scan prepare {args.dataset} needs --root PATH and --out CACHE")
            cache = Path(args.out)
            _prepare_dataset(args, overrides, workers, progress)
    _print_summary(reports, cache)
    return reports


def _prepare_config(config: str, overrides: list[str], out: str, workers: int, progress: bool,
                    verify: bool) -> Path:
    from cad2scan.config import load_config
    from cad2scan.train.loop import cache_dir_for, prepare_training_data

    cfg = load_config(config, overrides + ([f"data.cache_dir={out}"] if out else []))
    if verify:
        raise ConfigError("--verify works with a dataset (cad2scan prepare DATASET --root ... --verify)")
    data = prepare_training_data(cfg, progress=progress, workers=workers)
    print(f"models per class: {data.bank.count()}")
    print(f"unlabelled training scans: {len(data.train_scenes)}; labelled evaluation scans: {len(data.eval_scenes)}")
    return cache_dir_for(cfg)


def _split_tokens(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def _prepare_dataset(args: argparse.Namespace, overrides: list[str], workers: int, progress: bool) -> None:
    from cad2scan.config import load_config
    from cad2scan.prepare import prepare_models, prepare_scene_split

    cfg = load_config(_PRESET[args.dataset], overrides)
    root, out = Path(args.root), Path(args.out)
    if not root.is_dir():
        raise ConfigError(f"--root {root} is not a folder")
    if args.dataset == "modelnet40":
        if (root / "ModelNet40").is_dir() and not any(root.glob("*/*/*.off")):
            root = root / "ModelNet40"
        for split in _split_tokens(args.split) or [cfg.data.cad_split]:
            prepare_models(root, out, split=split, points_per_model=cfg.data.points_per_model,
                           max_per_class=cfg.data.max_models_per_class, workers=workers, progress=progress,
                           verify=args.verify)
        return
    scene_format = _scene_format(args.dataset, args.format, root)
    roles = []
    for token in _split_tokens(args.split) or ["train", "val"]:
        if token not in _ROLES:
            raise ConfigError(f"--split {token!r}: use train and/or val (which scans: --set data.train_scenes=... "
                              "or data.eval_scenes=...)")
        if _ROLES[token] not in roles:
            roles.append(_ROLES[token])
    for role in roles:
        selection = cfg.data.train_scenes if role == "train" else cfg.data.eval_scenes
        prepare_scene_split(role, scene_format, root, selection, out, voxel_size=cfg.data.voxel_size,
                            workers=workers, progress=progress, verify=args.verify)


def _scene_format(dataset: str, requested: str, root: Path) -> str:
    if dataset == "s3dis":
        if requested != "auto":
            raise ConfigError("--format applies to scannet only")
        return "s3dis"
    if requested != "auto":
        return requested
    from cad2scan.io.scannet import SCENE_PATTERN, list_scannet_exports

    if (root / "scans").is_dir() or any(p.is_dir() and SCENE_PATTERN.match(p.name) for p in root.iterdir()):
        return "scannet"
    if list_scannet_exports(root):
        return "scannet_npy"
    raise ConfigError(f"{root} holds neither scans/<scene>/ folders nor <scene>_vert.npy exports")


def _print_summary(reports: list, cache: Path) -> None:
    print("\nsummary")
    for report in reports:
        for line in report.summary_lines():
            print(line)
    bad = sum(len(r.failed) for r in reports)
    total = sum(r.total for r in reports)
    print(f"{total - bad} of {total} item(s) ready, {bad} bad file(s) skipped; cache: {cache}")
    print(f"use it with: cad2scan train --config <preset> --set data.cache_dir={cache}")
