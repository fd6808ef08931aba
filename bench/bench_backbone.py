"""Forward+backward time of MinkUNet14 (D=96) on a synthetic room, ours vs spconv if present.

    python bench/bench_backbone.py                    # 50k voxels, this machine's CPU
    python bench/bench_backbone.py --voxels 20000 --repeats 5 --device cuda

The scene is a room-like surface (floor, four walls, boxes standing on the floor) sampled
with points and voxelised at 5 cm with ``cad2scan.geometry.voxel.voxelise``. Prints the
median wall time of forward + backward (loss = mean of the output) after warm-up, voxels/s,
and, when the spconv 2.x package is importable, the same network built with spconv and the
ratio ours/spconv. We do not depend on spconv; the comparison is skipped without it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch

from cad2scan.geometry.voxel import voxelise
from cad2scan.model.backbone import MinkUNet14, make_sparse_input
from cad2scan.model.sparse import bf16_is_fast

VOXEL = 0.05


def _sample_rectangle(rng, origin, u, v, density):
    """Uniform points on the parallelogram origin + s u + t v, s, t in [0, 1]."""
    area = np.linalg.norm(np.cross(u, v))
    n = max(1, int(area * density))
    st = rng.random((n, 2))
    return origin + st[:, :1] * u + st[:, 1:] * v


def room_points(rng, length, width, height=2.5, n_boxes=8, density=2500.0):
    """Points on a floor, four walls and ``n_boxes`` boxes (5 visible faces each), metres."""
    o = np.zeros(3)
    ex, ey, ez = np.array([length, 0, 0.0]), np.array([0, width, 0.0]), np.array([0, 0, height])
    parts = [
        _sample_rectangle(rng, o, ex, ey, density),
        _sample_rectangle(rng, o, ex, ez, density),
        _sample_rectangle(rng, o + ey, ex, ez, density),
        _sample_rectangle(rng, o, ey, ez, density),
        _sample_rectangle(rng, o + ex, ey, ez, density),
    ]
    for _ in range(n_boxes):
        size = rng.uniform([0.4, 0.4, 0.4], [1.6, 1.2, 1.2]) * min(1.0, length / 4.0)  # small rooms, small boxes
        corner = np.array([rng.uniform(0, length - size[0]), rng.uniform(0, width - size[1]), 0.0])
        bx, by, bz = np.diag(size)
        parts += [
            _sample_rectangle(rng, corner + bz, bx, by, density),  # top
            _sample_rectangle(rng, corner, bx, bz, density),
            _sample_rectangle(rng, corner + by, bx, bz, density),
            _sample_rectangle(rng, corner, by, bz, density),
            _sample_rectangle(rng, corner + bx, by, bz, density),
        ]
    points = np.concatenate(parts)
    return points + rng.normal(0.0, 0.005, points.shape)  # a little scanner noise


def room_voxels(target_voxels: int, rng: np.random.Generator) -> np.ndarray:
    """(M, 3) int32 voxel coords (5 cm) of a room scaled so that M is close to the target."""
    length = 6.0
    for _ in range(6):
        seed = rng.integers(1 << 31)
        coords = voxelise(room_points(np.random.default_rng(seed), length, 0.8 * length), VOXEL).voxel_coords
        ratio = target_voxels / len(coords)
        if abs(ratio - 1) < 0.03:
            break
        length = max(0.5, length * ratio**0.6)  # floor grows with length^2, walls with length
    return coords


def time_fn(fn, repeats: int, warmup: int = 2) -> tuple[float, float]:
    """Median wall seconds and median process CPU seconds (all threads) of ``fn``. CPU time
    is the steadier number on a shared machine; wall time is what a user waits."""
    for _ in range(warmup):
        fn()
    walls, cpus = [], []
    for _ in range(repeats):
        w0, c0 = time.perf_counter(), time.process_time()
        fn()
        walls.append(time.perf_counter() - w0)
        cpus.append(time.process_time() - c0)
    return statistics.median(walls), statistics.median(cpus)


def bench_ours(coords: np.ndarray, device: torch.device, repeats: int, compute_dtype=None):
    model = MinkUNet14(in_channels=1, out_channels=96, compute_dtype=compute_dtype).to(device).train()
    coords_t = torch.as_tensor(coords)

    def step():
        model.zero_grad(set_to_none=True)
        x = make_sparse_input([coords_t], None, device)  # coordinate hashing counted, as in training
        model(x).feats.mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return time_fn(step, repeats)


def _spconv_minkunet14(spconv, in_channels=1, out_channels=96):
    """The same layout with spconv 2.x modules (MinkUNet14, init 32, planes 32..96)."""
    nn = torch.nn
    planes = (32, 64, 128, 256, 256, 128, 96, 96)

    def bn_relu(c):
        return [nn.BatchNorm1d(c), nn.ReLU(inplace=True)]

    class Block(spconv.SparseModule):
        def __init__(self, cin, c, key):
            super().__init__()
            self.a = spconv.SparseSequential(spconv.SubMConv3d(cin, c, 3, bias=False, indice_key=key), *bn_relu(c))
            self.b = spconv.SparseSequential(spconv.SubMConv3d(c, c, 3, bias=False, indice_key=key), nn.BatchNorm1d(c))
            self.proj = (
                None if cin == c else spconv.SparseSequential(spconv.SubMConv3d(cin, c, 1, bias=False), nn.BatchNorm1d(c))
            )

        def forward(self, x):
            out = self.b(self.a(x))
            res = x if self.proj is None else self.proj(x)
            return out.replace_feature(torch.relu(out.features + res.features))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = spconv.SparseSequential(
                spconv.SubMConv3d(in_channels, 32, 5, bias=False, indice_key="stem"), *bn_relu(32)
            )
            self.down, self.enc, self.up, self.dec = nn.ModuleList(), nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
            width, skips = 32, [32]
            for i in range(4):
                self.down.append(
                    spconv.SparseSequential(
                        spconv.SparseConv3d(width, width, 2, 2, bias=False, indice_key=f"down{i}"), *bn_relu(width)
                    )
                )
                self.enc.append(Block(width, planes[i], f"subm{i + 1}"))
                width = planes[i]
                skips.append(width)
            for i in range(4):
                c = planes[4 + i]
                self.up.append(
                    spconv.SparseSequential(
                        spconv.SparseInverseConv3d(width, c, 2, bias=False, indice_key=f"down{3 - i}"), *bn_relu(c)
                    )
                )
                self.dec.append(Block(c + skips[3 - i], c, f"subm{3 - i}" if i < 3 else "subm0"))
                width = c
            self.final = spconv.SubMConv3d(width, out_channels, 1, bias=True)

        def forward(self, x):
            out = self.stem(x)
            skips = [out]
            for d, e in zip(self.down, self.enc):
                out = e(d(out))
                skips.append(out)
            skips.pop()
            for u, d in zip(self.up, self.dec):
                out = u(out)
                out = d(out.replace_feature(torch.cat([out.features, skips.pop().features], 1)))
            return self.final(out)

    return Net()


def bench_spconv(coords: np.ndarray, device: torch.device, repeats: int):
    import spconv.pytorch as spconv  # noqa: PLC0415 (optional, never a dependency)
    import spconv.pytorch.ops as spconv_ops  # noqa: PLC0415

    if not torch.cuda.is_available():
        # spconv 2.3.8's CPU backward asks torch for the current CUDA stream, which fails
        # with a CPU-only torch; the stream is unused on CPU, so hand it a null one.
        spconv_ops.get_current_stream = lambda: 0

    model = _spconv_minkunet14(spconv).to(device).train()
    c = torch.as_tensor(coords, dtype=torch.int32)
    c = c - c.min(0).values
    shape = (c.max(0).values + 2).tolist()
    indices = torch.cat([torch.zeros(len(c), 1, dtype=torch.int32), c], 1).to(device)
    feats = torch.ones(len(c), 1, device=device)

    def step():
        model.zero_grad(set_to_none=True)
        x = spconv.SparseConvTensor(feats, indices, shape, batch_size=1)
        model(x).features.mean().backward()
        if device.type == "cuda":
            torch.cuda.synchronize()

    return time_fn(step, repeats)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voxels", type=int, default=50_000, help="target number of 5 cm voxels")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs (after 2 warm-up runs)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch CPU threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bf16", choices=["auto", "on", "off"], default="auto", help="also time compute_dtype=bfloat16")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    coords = room_voxels(args.voxels, np.random.default_rng(args.seed))
    n = len(coords)
    print(f"scene: {n} voxels (5 cm room), device {device}, {torch.get_num_threads()} threads, torch {torch.__version__}")

    def report(name, wall, cpu, note=""):
        print(
            f"{name:6s} MinkUNet14 D=96 forward+backward: {wall * 1e3:8.1f} ms wall, {cpu * 1e3:8.1f} ms CPU"
            f"  ({n / wall:,.0f} voxels/s){note}"
        )

    ours, ours_cpu = bench_ours(coords, device, args.repeats)
    report("ours", ours, ours_cpu, "  float32")
    if args.bf16 == "on" or (args.bf16 == "auto" and bf16_is_fast(device)):
        ours_bf16, ours_bf16_cpu = bench_ours(coords, device, args.repeats, torch.bfloat16)
        report("ours", ours_bf16, ours_bf16_cpu, f"  bfloat16 matmuls, {ours / ours_bf16:.2f}x the float32 speed")
    else:
        print("bfloat16 run skipped (no native bf16 matmuls here; --bf16 on forces it)")

    try:
        import spconv.pytorch  # noqa: F401, PLC0415
    except Exception as exc:  # noqa: BLE001  any import failure means "not available"
        print(f"spconv comparison skipped: spconv 2.x is not importable ({type(exc).__name__}: {exc})")
        return
    theirs, theirs_cpu = bench_spconv(coords, device, args.repeats)
    report("spconv", theirs, theirs_cpu, "  float32")
    print(f"ratio ours/spconv (float32): {ours / theirs:.2f} wall, {ours_cpu / theirs_cpu:.2f} CPU  (< 1: ours is faster)")


if __name__ == "__main__":
    main()
