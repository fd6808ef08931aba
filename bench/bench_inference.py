"""Inference time of the full network on a 100k-point room, and peak memory whole vs tiled.

    python bench/bench_inference.py                        # CPU, default sizes (~30 s on 2 idle cores)
    python bench/bench_inference.py --points 10000000 --max-voxels 1000000   # 10M points
    python bench/bench_inference.py --scan scene0000_00_vh_clean_2.ply --points 0
    python bench/bench_inference.py --device cuda --repeats 20

Part 1: ``predict_scan`` (voxelise + forward + softmax + copy to points) of a generated
room-like scan (floor, four walls, furniture boxes, scanner noise; ``--room-points``
points) with the paper's network at full size: MinkUNet14 (D = 96), convex hull with
K = 128 prototypes, class anchors (random weights: the cost does not depend on them).
Prints the median wall time of ``--repeats`` runs after ``--warmup`` runs and its ratio to
the 1 s goal (below 1 means the goal is met).

Part 2: a "building" of such rooms side by side (``--points`` points in all) predicted
whole and tiled (``--max-voxels``), each in its own child process so that the peak memory
of one does not hide the other's: on CPU the peak resident set size of the child minus its
size just before prediction; on CUDA ``torch.cuda.max_memory_allocated``. The probabilities
of the two runs are compared (largest absolute difference). ``--no-whole`` skips the whole
run (about 3 KB per voxel on CPU: some 18 GB for 10M points of rooms, 5.8M voxels).

Timings on a machine that other jobs keep busy are meaningless with 2 threads (OpenMP
threads wait for each other: 10-30x slower runs were seen); the room line prints the load
average, and ``--threads 1`` is the robust choice there.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from cad2scan.config import ModelConfig
from cad2scan.model.net import RTLNet
from cad2scan.predict import DEFAULT_OVERLAP, predict_scan, select_device

VOXEL = 0.05
GOAL_SECONDS = 1.0
WARMUP_POINTS = 20_000  # a child's warm-up prediction, before its memory baseline


# ------------------------------------------------------------------------ scenes
def _rectangle(rng: np.random.Generator, corner, u, v, n: int) -> np.ndarray:
    """n uniform points on the parallelogram corner + s u + t v, s, t in [0, 1]."""
    st = rng.random((n, 2))
    return np.asarray(corner) + st[:, :1] * np.asarray(u) + st[:, 1:] * np.asarray(v)


def room_scan(rng: np.random.Generator, num_points: int, length: float = 6.0, width: float = 5.0,
              height: float = 2.6, num_boxes: int = 10) -> np.ndarray:
    """(num_points, 3) float32 metres: a floor, four walls and boxes standing on the floor
    (top and four sides), points spread uniformly over the total area, 5 mm noise."""
    ex, ey, ez = np.array([length, 0.0, 0.0]), np.array([0.0, width, 0.0]), np.array([0.0, 0.0, height])
    faces = [(np.zeros(3), ex, ey), (np.zeros(3), ex, ez), (ey, ex, ez), (np.zeros(3), ey, ez), (ex, ey, ez)]
    for _ in range(num_boxes):
        size = rng.uniform([0.4, 0.4, 0.4], [1.8, 1.2, 1.4])
        corner = np.array([rng.uniform(0, length - size[0]), rng.uniform(0, width - size[1]), 0.0])
        bx, by, bz = np.diag(size)
        faces += [(corner + bz, bx, by), (corner, bx, bz), (corner + by, bx, bz), (corner, by, bz),
                  (corner + bx, by, bz)]
    areas = np.array([np.linalg.norm(np.cross(u, v)) for _, u, v in faces])
    counts = rng.multinomial(num_points, areas / areas.sum())
    points = np.concatenate([_rectangle(rng, c, u, v, n) for (c, u, v), n in zip(faces, counts)])
    points += rng.normal(0.0, 0.005, points.shape)
    return points.astype(np.float32)


def building_scan(rng: np.random.Generator, num_points: int, points_per_room: int = 100_000) -> np.ndarray:
    """(num_points, 3) float32: rooms of ``points_per_room`` points on a square grid, 6.2 x 5.2 m apart."""
    rooms = max(1, round(num_points / points_per_room))
    side = int(np.ceil(np.sqrt(rooms)))
    sizes = [num_points // rooms + (i < num_points % rooms) for i in range(rooms)]
    out = np.empty((num_points, 3), dtype=np.float32)
    start = 0
    for i, n in enumerate(sizes):
        out[start:start + n] = room_scan(rng, n) + np.array([6.2 * (i % side), 5.2 * (i // side), 0.0], np.float32)
        start += n
    return out


def full_size_net(num_classes: int) -> RTLNet:
    """The paper's network at full size (MinkUNet14 D=96, hull K=128), eval mode."""
    cfg = ModelConfig()
    assert cfg.backbone.out_channels == 96 and cfg.hull.num_prototypes == 128 and cfg.backbone.width_scale == 1.0
    return RTLNet(cfg, num_classes).eval()


def _resident_bytes() -> int:
    """Current resident set size (Linux /proc), else the lifetime peak."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ------------------------------------------------------------------------ parts
def bench_room(args, device: torch.device) -> None:
    if args.scan:
        from cad2scan.io.scans import read_scan

        coord, name = read_scan(args.scan)["coord"], Path(args.scan).name
    else:
        coord, name = room_scan(np.random.default_rng(args.seed), args.room_points), "generated room"
    torch.manual_seed(args.seed)
    net = full_size_net(args.classes).to(device)
    report = {}
    for _ in range(args.warmup):
        _, report = predict_scan(net, coord, VOXEL, device)
    wall, cpu = [], []
    for _ in range(args.repeats):
        started, started_cpu = time.perf_counter(), time.process_time()
        _, report = predict_scan(net, coord, VOXEL, device)
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    median = statistics.median(wall)
    print(f"[room] {name}: {len(coord)} points, {report['voxels']} voxels at {VOXEL} m, device {device}, "
          f"{torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"[room] predict_scan median {median:.3f} s over {args.repeats} runs (min {min(wall):.3f}, "
          f"max {max(wall):.3f}; {1e6 * median / report['voxels']:.1f} us/voxel; process CPU time median "
          f"{statistics.median(cpu):.3f} s); ratio to the {GOAL_SECONDS:.0f} s goal: {median / GOAL_SECONDS:.2f}x")


def run_child(args) -> None:
    """Child process: predict the saved scan once, print one JSON line."""
    device = select_device(args.device)
    coord = np.load(args.child_scan)
    torch.manual_seed(args.seed)
    net = full_size_net(args.classes).to(device)
    predict_scan(net, coord[:WARMUP_POINTS], VOXEL, device)  # first-call costs (thread pools, allocator)
    baseline = _resident_bytes() if device.type == "cpu" else 0
    max_voxels = args.max_voxels if args.child == "tiled" else None
    probabilities, report = predict_scan(net, coord, VOXEL, device, max_voxels=max_voxels, overlap=args.overlap)
    report["baseline_bytes"] = baseline
    np.save(args.child_out, probabilities)
    print("REPORT " + json.dumps(report))


def bench_large(args, device: torch.device) -> None:
    coord = building_scan(np.random.default_rng(args.seed + 1), args.points)
    with tempfile.TemporaryDirectory() as tmp:
        scan_file = Path(tmp) / "scan.npy"
        np.save(scan_file, coord)
        del coord
        modes = ["tiled"] + ([] if args.no_whole else ["whole"])
        reports = {}
        for mode in modes:
            cmd = [sys.executable, __file__, "--child", mode, "--child-scan", str(scan_file),
                   "--child-out", str(Path(tmp) / f"{mode}.npy"), "--device", str(device), "--classes",
                   str(args.classes), "--seed", str(args.seed), "--max-voxels", str(args.max_voxels),
                   "--overlap", str(args.overlap), "--threads", str(args.threads)]
            done = subprocess.run(cmd, capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("REPORT ")]
            if done.returncode != 0 or not lines:
                print(f"[large] {mode}: child failed (exit {done.returncode}; -9 = killed, e.g. out of memory)\n"
                      + done.stderr[-2000:])
                continue
            r = json.loads(lines[0][len("REPORT "):])
            reports[mode] = r
            used = r["peak_memory_bytes"] - r["baseline_bytes"]
            print(f"[large] {mode:5s}: {r['points']} points, {r['voxels']} voxels, {r['tiles']} forward(s), "
                  f"tile {r['tile_size']} / overlap {r['overlap']} voxels, largest forward {r['max_forward_voxels']} "
                  f"voxels, processed {r['voxels_processed'] / r['voxels']:.2f}x voxels, {r['seconds']:.1f} s, "
                  f"peak memory {used / 2**20:.0f} MiB ({r['peak_memory_kind']}"
                  + (f" {r['peak_memory_bytes'] / 2**20:.0f} MiB - before {r['baseline_bytes'] / 2**20:.0f} MiB)"
                     if device.type == "cpu" else ")"))
        if len(reports) == 2:
            tiled, whole = reports["tiled"], reports["whole"]
            diff = float(np.abs(np.load(Path(tmp) / "tiled.npy") - np.load(Path(tmp) / "whole.npy")).max())
            mem = lambda r: r["peak_memory_bytes"] - r["baseline_bytes"]  # noqa: E731
            print(f"[large] tiled / whole: memory {mem(tiled) / mem(whole):.2f}x, time "
                  f"{tiled['seconds'] / whole['seconds']:.2f}x; max |p_tiled - p_whole| = {diff:.2e}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    parser.add_argument("--room-points", type=int, default=100_000)
    parser.add_argument("--scan", help="time this scan file (any format read_scan reads) instead of a generated room")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--classes", type=int, default=12, help="C, targets + background")
    parser.add_argument("--points", type=int, default=600_000, help="points of the large scan (0: skip part 2)")
    parser.add_argument("--max-voxels", type=int, default=300_000, help="tiling threshold of part 2")
    parser.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="tile context margin, voxels")
    parser.add_argument("--no-whole", action="store_true", help="skip the whole-scan run of part 2")
    parser.add_argument("--skip-room", action="store_true", help="skip part 1")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--child", choices=["whole", "tiled"], help=argparse.SUPPRESS)
    parser.add_argument("--child-scan", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child:
        run_child(args)
        return
    device = select_device(args.device)
    if not args.skip_room:
        bench_room(args, device)
    if args.points > 0:
        bench_large(args, device)


if __name__ == "__main__":
    main()
