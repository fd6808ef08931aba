"""Benchmark: cad2scan's Poisson-disk sampler against a reference sampler and uniform sampling.

    python bench/bench_sampling.py                      # generated furniture-like meshes
    python bench/bench_sampling.py --root ModelNet40 --limit 20 --points 8192

For each mesh it times ``poisson_disk_sample`` and, in the same run, the Poisson-disk
sampler of ``point_cloud_utils`` (``sample_mesh_poisson_disk``) or ``open3d``
(``sample_points_poisson_disk``) when one is importable, plus plain area-weighted uniform
sampling; it prints the time ratio and the spacing statistics (nearest-neighbour
coefficient of variation, NN CV: lower is more even) of each. ``--reference`` picks one
(point-cloud-utils first by default); ``--oversample`` trades our uniformity for speed, so
the two can be compared at equal uniformity.

Neither reference is a dependency: install one beside cad2scan (e.g. into a folder on
PYTHONPATH). open3d 0.20 imports plotly and dash when it loads, so those must be importable
too.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from cad2scan.geometry.mesh import Mesh
from cad2scan.geometry.sampling import poisson_disk_sample, sample_surface_uniform, uniformity


# --------------------------------------------------------------------------- meshes
def _box(low, high) -> Mesh:
    low, high = np.asarray(low, float), np.asarray(high, float)
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], float)
    faces = [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
             [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
    return Mesh(low + corners * (high - low), np.array(faces))


def _cylinder(centre_xy, radius, z_low, z_high, segments=32) -> Mesh:
    angle = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    ring = np.stack([np.cos(angle) * radius + centre_xy[0], np.sin(angle) * radius + centre_xy[1]], 1)
    vertices = np.vstack([
        np.column_stack([ring, np.full(segments, z_low)]),
        np.column_stack([ring, np.full(segments, z_high)]),
        [[centre_xy[0], centre_xy[1], z_low], [centre_xy[0], centre_xy[1], z_high]],
    ])
    faces = []
    for i in range(segments):
        j = (i + 1) % segments
        faces += [[i, j, segments + j], [i, segments + j, segments + i],
                  [2 * segments, j, i], [2 * segments + 1, segments + i, segments + j]]
    return Mesh(vertices, np.array(faces))


def _subdivide(mesh: Mesh, times: int) -> Mesh:
    """Split every triangle into 4 (more faces, same surface), like dense CAD meshes."""
    vertices, faces = mesh.vertices, mesh.faces
    for _ in range(times):
        a, b, c = faces[:, 0], faces[:, 1], faces[:, 2]
        start = len(vertices)
        n_faces = len(faces)
        mids = np.vstack([(vertices[a] + vertices[b]) / 2, (vertices[b] + vertices[c]) / 2,
                          (vertices[c] + vertices[a]) / 2])
        ab, bc, ca = (start + np.arange(n_faces) + k * n_faces for k in range(3))
        vertices = np.vstack([vertices, mids])
        faces = np.vstack([np.column_stack([a, ab, ca]), np.column_stack([ab, b, bc]),
                           np.column_stack([ca, bc, c]), np.column_stack([ab, bc, ca])])
    return Mesh(vertices, faces)


def generated_meshes(count: int, rng: np.random.Generator) -> list[tuple[str, Mesh]]:
    """Tables, chairs, shelves and stools made of boxes and cylinders, random sizes."""
    meshes = []
    for index in range(count):
        kind = ("table", "chair", "shelf", "stool")[index % 4]
        w, d, h = rng.uniform(0.4, 1.6), rng.uniform(0.4, 1.0), rng.uniform(0.4, 1.8)
        leg = rng.uniform(0.02, 0.06)
        parts = []
        if kind in ("table", "chair"):
            parts.append(_box([0, 0, h * 0.55], [w, d, h * 0.55 + 0.03]))
            for x in (0, w - leg):
                for y in (0, d - leg):
                    parts.append(_box([x, y, 0], [x + leg, y + leg, h * 0.55]))
            if kind == "chair":
                parts.append(_box([0, d - 0.03, h * 0.58], [w, d, h]))
        elif kind == "shelf":
            for z in np.linspace(0, h, 5):
                parts.append(_box([0, 0, z], [w, d, z + 0.02]))
            parts += [_box([0, 0, 0], [0.02, d, h]), _box([w - 0.02, 0, 0], [w, d, h])]
        else:
            parts.append(_cylinder((0, 0), w / 3, h * 0.9, h, segments=48))
            for k in range(3):
                a = 2 * np.pi * k / 3
                parts.append(_cylinder((np.cos(a) * w / 4, np.sin(a) * w / 4), leg, 0, h * 0.9))
        mesh = _subdivide(Mesh.concatenate(parts), int(rng.integers(0, 4)))
        meshes.append((f"{kind}_{index:03d}", mesh))
    return meshes


def off_meshes(root: Path, limit: int) -> list[tuple[str, Mesh]]:
    from cad2scan.io.off import read_off  # noqa: PLC0415 (only needed with --root)

    paths = sorted(root.rglob("*.off"))[:limit]
    if not paths:
        raise SystemExit(f"no .off files under {root}")
    return [(str(path.relative_to(root)), read_off(path)) for path in paths]


# --------------------------------------------------------------------------- reference
def reference_sampler(which: str = "auto"):
    """(name, sample(mesh, n, seed) -> (n', 3)) of an installed Poisson-disk sampler, or None.

    which: "pcu" (point_cloud_utils), "open3d", or "auto" (the first importable of the two).
    """
    if which not in ("auto", "pcu", "open3d"):
        raise ValueError(f"unknown reference {which!r}")
    try:
        if which == "open3d":
            raise ImportError
        import point_cloud_utils as pcu  # noqa: PLC0415

        def sample_pcu(mesh: Mesh, n: int, seed: int, radius: float = 0.0) -> np.ndarray:
            # n <= 0: the disk radius decides the count.  seed 0 means "clock" there: avoid it.
            v = np.ascontiguousarray(mesh.vertices, dtype=np.float64)
            f = np.ascontiguousarray(mesh.faces, dtype=np.int32)
            face_ids, bary = pcu.sample_mesh_poisson_disk(
                v, f, n, radius=radius, random_seed=seed + 1)
            return pcu.interpolate_barycentric_coords(f, face_ids, bary, v)

        return "point_cloud_utils.sample_mesh_poisson_disk", sample_pcu
    except ImportError:
        if which == "pcu":
            return None
    try:
        import open3d as o3d  # noqa: PLC0415

        def sample_o3d(mesh: Mesh, n: int, seed: int, radius: float = 0.0) -> np.ndarray:
            o3d.utility.random.seed(seed)
            tri = o3d.geometry.TriangleMesh(o3d.utility.Vector3dVector(mesh.vertices),
                                            o3d.utility.Vector3iVector(mesh.faces.astype(np.int32)))
            return np.asarray(tri.sample_points_poisson_disk(n).points)

        return "open3d.TriangleMesh.sample_points_poisson_disk", sample_o3d
    except ImportError:
        return None


def reference_at_count(sample, mesh: Mesh, n: int, seed: int, first: np.ndarray,
                       tolerance: float = 0.02, steps: int = 8):
    """Re-run a radius-driven reference until it returns n points within ``tolerance``.

    first: the reference's answer when asked for n points.  Each step guesses the radius
    from count ~ 1 / r^2 (point_cloud_utils only; open3d takes a count, no radius).
    Returns (seconds of the last call, its points).
    """
    points, seconds = first, float("nan")
    radius = uniformity(first)["mean_nn"]
    for _ in range(steps):
        if abs(len(points) - n) <= tolerance * n:
            break
        radius *= np.sqrt(len(points) / n)
        seconds, points = _timed(sample, mesh, -1, seed, radius)
    return seconds, points


def coverage(points: np.ndarray, dense: np.ndarray) -> float:
    """Largest distance from a dense uniform surface sample to the nearest chosen point,
    in units of the chosen points' mean nearest-neighbour distance (lower covers better)."""
    from scipy.spatial import cKDTree  # noqa: PLC0415

    dist, _ = cKDTree(points).query(dense, k=1)
    return float(dist.max() / uniformity(points)["mean_nn"])


def _timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return time.perf_counter() - start, result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="folder searched recursively for .off meshes")
    parser.add_argument("--limit", type=int, default=16, help="number of meshes")
    parser.add_argument("--points", type=int, default=8192, help="points per mesh")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--oversample", type=float, default=None,
                        help="candidates per point for poisson_disk_sample (default: its own)")
    parser.add_argument("--reference", choices=["auto", "pcu", "open3d"], default="auto",
                        help="reference sampler (auto: point_cloud_utils, else open3d)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    meshes = off_meshes(args.root, args.limit) if args.root else generated_meshes(args.limit, rng)
    reference = reference_sampler(args.reference)
    if reference is None:
        print(f"reference skipped: {'neither point_cloud_utils nor open3d' if args.reference == 'auto' else args.reference}"
              f" is importable")
    else:
        print(f"reference: {reference[0]}")

    rows = []
    print(f"{'mesh':28s} {'faces':>7s} | {'ours s':>6s} {'CV':>5s} {'cov':>5s} | "
          f"{'ref s':>6s} {'n':>6s} {'CV':>5s} | {'ref@n s':>7s} {'n':>6s} {'CV':>5s} {'cov':>5s} | "
          f"{'unif CV':>7s} {'cov':>5s}")
    for index, (name, mesh) in enumerate(meshes):
        seed = args.seed + index
        extra = {} if args.oversample is None else {"oversample": args.oversample}
        ours_t, ours = _timed(lambda: poisson_disk_sample(
            mesh, args.points, np.random.default_rng(seed), name=name, **extra))
        unif = sample_surface_uniform(mesh, args.points, np.random.default_rng(seed))
        dense = sample_surface_uniform(mesh, 16 * args.points, np.random.default_rng(seed + 10_000))
        row = {"ours_t": ours_t, "ours_cv": uniformity(ours)["nn_cv"], "ours_cov": coverage(ours, dense),
               "unif_cv": uniformity(unif)["nn_cv"], "unif_cov": coverage(unif, dense)}
        ref_text = "  (no reference)"
        if reference is not None:
            ref_t, ref = _timed(reference[1], mesh, args.points, seed)
            at_t, at_n = reference_at_count(reference[1], mesh, args.points, seed, ref)
            if np.isnan(at_t):  # the first answer was already close enough
                at_t = ref_t
            row.update(ref_t=ref_t, ref_n=len(ref), ref_cv=uniformity(ref)["nn_cv"],
                       at_t=at_t, at_n=len(at_n), at_cv=uniformity(at_n)["nn_cv"],
                       at_cov=coverage(at_n, dense))
            ref_text = (f"{ref_t:6.3f} {len(ref):6d} {row['ref_cv']:5.3f} | {at_t:7.3f} {len(at_n):6d} "
                        f"{row['at_cv']:5.3f} {row['at_cov']:5.2f}")
        rows.append(row)
        print(f"{name[-28:]:28s} {len(mesh.faces):7d} | {ours_t:6.3f} {row['ours_cv']:5.3f} "
              f"{row['ours_cov']:5.2f} | {ref_text} | {row['unif_cv']:7.3f} {row['unif_cov']:5.2f}")

    def med(key):
        return float(np.median([row[key] for row in rows]))

    print(f"\n{len(rows)} meshes, {args.points} points each; medians over meshes "
          f"(cov = max distance from a dense uniform sample to the set / mean NN distance)")
    print(f"ours      : {med('ours_t'):.3f} s/mesh, exactly {args.points} points, "
          f"NN CV {med('ours_cv'):.3f}, coverage {med('ours_cov'):.2f}")
    print(f"uniform   : NN CV {med('unif_cv'):.3f}, coverage {med('unif_cov'):.2f}")
    if reference is not None:
        print(f"reference : {med('ref_t'):.3f} s/mesh asked for {args.points}: "
              f"{med('ref_n'):.0f} points, NN CV {med('ref_cv'):.3f}")
        print(f"ref at n  : {med('at_t'):.3f} s/mesh for one call at the radius found "
              f"(search not counted), {med('at_n'):.0f} points, NN CV {med('at_cv'):.3f}, "
              f"coverage {med('at_cov'):.2f}")
        ratios = [row["ref_t"] / row["ours_t"] for row in rows]
        ratios_at = [row["at_t"] / row["ours_t"] for row in rows]
        print(f"time ratio reference / ours: {np.median(ratios):.2f}x (asked n), "
              f"{np.median(ratios_at):.2f}x (at n, radius known)")
    else:
        print("reference skipped (install point_cloud_utils or open3d to compare)")


if __name__ == "__main__":
    main()
