"""Training throughput of the ScanNet config on ScanNet-sized stand-in data, and the epoch time.

    python bench/bench_train.py                          # this machine, defaults below
    python bench/bench_train.py --device cuda --amp bf16 --steps 20 --workers 4

Stand-in data, made here (no download): unlabelled "scans" of ~150k points each (a room
of 4-7 m x 3.5-6 m: floor, four walls with a gap, furniture-like boxes; points uniform
on the surfaces), reduced to one point per 5 cm voxel as ``cad2scan prepare`` caches
training scans; and a model bank of box-assembly "CAD models" (8192 points each) for the
11 ScanNet target classes plus negatives. A step is the paper's batch: 4 scans, each mixed
with Q + 1 = 12 models (PDA: size prior, rotation, scaling, cropping, placement on the floor).

The real training engine runs (``cad2scan.train.loop.train``: DataLoader workers, the
config's network, Adam, mixed precision when asked) for ``--warmup`` + ``--steps`` steps;
the measured steps give scans/s, points/s and the fraction of step time spent waiting for
data. Printed: the projected time per epoch of the 1,201 ScanNet v2 training scans and its
ratio to the paper's 4.5 min/epoch (15 h for 200 epochs on two RTX 2080 Ti).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # as `python -m cad2scan` does (see cad2scan/__main__.py)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from cad2scan.classes import load_category_set, load_size_priors  # noqa: E402
from cad2scan.config import load_config  # noqa: E402
from cad2scan.prepare import ModelBank, first_point_per_voxel  # noqa: E402
from cad2scan.train.loop import TrainingData, train  # noqa: E402

SCANNET_TRAIN_SCANS = 1201
PAPER_MIN_PER_EPOCH = 15 * 60 / 200  # 4.5 min: 15 h / 200 epochs, two RTX 2080 Ti
NEGATIVE_CLASSES = ["lamp", "plant", "monitor", "person", "vase"]


def _rectangle(rng, origin, u, v, count):
    st = rng.random((count, 2))
    return origin + st[:, :1] * u + st[:, 1:] * v


def _surfaces(rng, rects, total):
    """``total`` points spread over parallelograms (origin, u, v) in proportion to their area."""
    areas = np.array([np.linalg.norm(np.cross(u, v)) for _, u, v in rects])
    counts = rng.multinomial(total, areas / areas.sum())
    return np.concatenate([_rectangle(rng, o, u, v, n) for (o, u, v), n in zip(rects, counts)])


def _box_faces(corner, size, bottom=False):
    bx, by, bz = np.diag(size)
    faces = [(corner + bz, bx, by), (corner, bx, bz), (corner + by, bx, bz), (corner, by, bz), (corner + bx, by, bz)]
    return faces + ([(corner, bx, by)] if bottom else [])


def stand_in_scan(rng, points=150_000) -> np.ndarray:
    """(points, 3) float32: a furnished room, z up, floor at z = 0."""
    length, width, height = rng.uniform(4, 7), rng.uniform(3.5, 6), rng.uniform(2.4, 3.0)
    o = np.zeros(3)
    ex, ey, ez = np.array([length, 0, 0]), np.array([0, width, 0]), np.array([0, 0, height])
    door = rng.uniform(0.5, length - 1.5)
    rects = [(o, ex, ey), (o, ey, ez), (o + ex, ey, ez), (o + ey, ex, ez),
             (o, np.array([door, 0, 0]), ez), (o + np.array([door + 0.9, 0, 0]), ex - np.array([door + 0.9, 0, 0]), ez)]
    for _ in range(rng.integers(6, 12)):
        size = rng.uniform([0.4, 0.4, 0.4], [1.8, 1.2, 1.6])
        corner = np.array([rng.uniform(0, length - size[0]), rng.uniform(0, width - size[1]), 0.0])
        rects += _box_faces(corner, size)
    coord = _surfaces(rng, rects, points) + rng.normal(0, 0.005, (points, 3))
    return coord.astype(np.float32)


def stand_in_model(rng, points=8192) -> np.ndarray:
    """(points, 3) float32: 1-3 stacked boxes, normalised like the model bank (xy-centred,
    bottom at z = 0, bounding-box diagonal 1)."""
    rects, top = [], 0.0
    for _ in range(rng.integers(1, 4)):
        size = rng.uniform(0.2, 1.0, 3)
        rects += _box_faces(np.array([-size[0] / 2, -size[1] / 2, top]), size, bottom=True)
        top += size[2]
    p = _surfaces(rng, rects, points)
    p[:, :2] -= p[:, :2].mean(axis=0)
    p[:, 2] -= p[:, 2].min()
    return (p / np.linalg.norm(p.max(axis=0) - p.min(axis=0))).astype(np.float32)


def make_stand_in_data(folder: Path, scans: int, models_per_class: int, voxel_size: float, seed: int = 0):
    """TrainingData over stand-in scans (written to ``folder`` as .npz scene files)."""
    rng = np.random.default_rng(seed)
    categories = load_category_set("scannet11")
    names = sorted({c.cad[0] for c in categories.classes}) + NEGATIVE_CLASSES
    bank = ModelBank({name: [stand_in_model(rng) for _ in range(models_per_class)] for name in names})
    files, raw, kept = [], 0, 0
    for i in range(scans):
        coord = stand_in_scan(rng)
        keep = first_point_per_voxel(coord, voxel_size)  # what `cad2scan prepare` caches for training
        path = folder / f"scan{i:02d}.npz"
        np.savez(path, coord=coord[keep], label=np.full(len(keep), -1, np.int64), floor_z=np.float64(0.0))
        files.append(path)
        raw, kept = raw + len(coord), kept + len(keep)
    data = TrainingData(categories, load_size_priors("size_priors"), bank, files, [])
    return data, raw / scans, kept / scans


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=3, help="measured steps (default 3)")
    parser.add_argument("--warmup", type=int, default=1, help="steps before measuring (default 1)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument("--amp", default="off", choices=["off", "bf16", "fp16"])
    parser.add_argument("--width-scale", type=float, default=1.0, help="backbone width (paper: 1.0)")
    parser.add_argument("--batch-size", type=int, default=4, help="scans per step (paper: 4)")
    parser.add_argument("--workers", type=int, default=-1,
                        help="DataLoader workers (default: min(4, cores - 1))")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: the engine's choice)")
    parser.add_argument("--scans", type=int, default=8, help="distinct stand-in scans to cycle through")
    parser.add_argument("--json", default="", help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    workers = args.workers if args.workers >= 0 else min(4, max(0, cores - 1))

    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        started = time.perf_counter()
        data, raw_points, voxel_points = make_stand_in_data(Path(tmp), args.scans, 2, 0.05)
        made = time.perf_counter() - started
        total = args.warmup + args.steps
        cfg = load_config("scannet", [
            "name=bench_train", f"train.device={args.device}", f"train.amp={args.amp}",
            f"model.backbone.width_scale={args.width_scale}", f"train.batch_size={args.batch_size}",
            f"train.num_workers={workers}", f"train.num_threads={args.threads}", "train.epochs=1",
            f"train.steps_per_epoch={total}", "train.log_every=1", "train.tensorboard=false"])
        result = train(cfg, Path(tmp) / "run", data=data, progress=False)
        records = [json.loads(line) for line in (Path(tmp) / "run" / "metrics.jsonl").read_text().splitlines()]
    measured = [r for r in records if "loss" in r and r["step"] > args.warmup]
    step_s = [args.batch_size / r["scans_per_s"] for r in measured]
    wait_s = [r["data_wait_frac"] * s for r, s in zip(measured, step_s)]
    points = [r["points_per_s"] * s for r, s in zip(measured, step_s)]
    seconds = sum(step_s)
    scans_per_s = args.batch_size * len(measured) / seconds
    epoch_min = SCANNET_TRAIN_SCANS / scans_per_s / 60
    numbers = {
        "device": str(torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                                   ("cpu" if args.device == "auto" else args.device))),
        "cpu_cores": cores, "load_avg_1min": round(os.getloadavg()[0], 2), "torch_threads": torch.get_num_threads(),
        "data_workers": workers, "amp": args.amp,
        "width_scale": args.width_scale, "batch_size": args.batch_size,
        "scan_points_raw": round(raw_points), "scan_points_cached": round(voxel_points),
        "voxels_per_step": round(float(np.mean([r["voxels"] for r in measured]))),
        "points_per_step": round(sum(points) / len(points)),
        "seconds_per_step": round(seconds / len(measured), 3),
        "scans_per_s": round(scans_per_s, 4), "points_per_s": round(sum(points) / seconds),
        "data_wait_frac": round(sum(wait_s) / seconds, 4),
        "epoch_minutes": round(epoch_min, 1), "ratio_to_paper": round(epoch_min / PAPER_MIN_PER_EPOCH, 2),
        "measured_steps": len(measured), "warmup_steps": args.warmup, "data_setup_s": round(made, 1),
        "train_call_s": round(result.seconds, 1),
    }
    print(f"training throughput, ScanNet config (width {args.width_scale}, amp {args.amp}) on {numbers['device']}, "
          f"{numbers['torch_threads']} torch threads + {workers} data workers ({cores} cores, load average "
          f"{numbers['load_avg_1min']:.1f})")
    print(f"  stand-in scan: {numbers['scan_points_raw']} points raw, {numbers['scan_points_cached']} cached "
          f"(1 per 5 cm voxel); batch: {args.batch_size} scans x 12 models of 8192 points")
    print(f"  per step: {numbers['voxels_per_step']} voxels, {numbers['points_per_step']} points, "
          f"{numbers['seconds_per_step']:.2f} s (mean of {len(measured)} after {args.warmup} warm-up)")
    print(f"  throughput: {scans_per_s:.3f} scans/s, {numbers['points_per_s']} points/s, "
          f"data wait {100 * numbers['data_wait_frac']:.1f}% of step time")
    print(f"  projected epoch ({SCANNET_TRAIN_SCANS} scans): {epoch_min:.1f} min = {numbers['ratio_to_paper']:.2f}x "
          f"the paper's {PAPER_MIN_PER_EPOCH:.1f} min/epoch (two RTX 2080 Ti)")
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    sys.exit(main())
