"""A simulated handheld depth scan of a synthetic room (real-scan artefacts included).

The room's surfaces are sampled densely; from several viewpoints inside the room a
spherical depth buffer decides what each viewpoint sees (occluded, back-facing and
grazing surfaces go missing, e.g. under furniture or behind a wall); seen points are
kept with a probability that falls with range; ranges get noise growing with distance;
then holes, random dropout and a few flying-pixel outliers (label 0, unannotated) are
added. The union over viewpoints is the scan.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import minimum_filter

from cad2scan.synth.rooms import CURTAIN, FLOOR, PICTURE, WALL, WALL_THICKNESS, WINDOW, Room

_MAX_SPLAT_BINS = 16
_PART_BITS = 20  # up to a million parts per room in the depth-buffer keys
# Labels of parts a viewpoint may stand next to (flat on the walls, or the walls themselves).
_NOT_OBSTACLES = (WALL, FLOOR, WINDOW, PICTURE, CURTAIN)


@dataclass
class ScannerConfig:
    """Knobs of the simulated sensor (metres, degrees).

    num_viewpoints, viewpoint_height: sensor positions (free floor space, spread out) and
                             their height range.
    sample_spacing:          spacing of the dense surface samples before visibility; the
                             scan's point spacing where seen up close.
    angular_resolution_deg:  bin size of the spherical depth buffer.
    splat_factor:            each sample occludes a disc of splat_factor * spacing / 2
                             (random samples leave gaps; this closes them).
    depth_tolerance:         a point is visible if its range is within
                             ``depth_tolerance + depth_tolerance_rel * range`` (plus the
                             surface's own slope across the bin) of the bin's nearest range.
    full_density_range:      points nearer than this are kept with probability 1 ...
    density_falloff:         ... farther ones with (full_density_range / range) ** falloff.
    min_range, max_range:    the sensor measures nothing nearer / farther than these.
    max_incidence_deg:       surfaces seen more obliquely than this return nothing.
    max_elevation_deg:       nothing above this elevation is captured (operators rarely
                             aim at the ceiling: upper walls stay partly unscanned).
    noise_base, noise_quadratic: range noise sigma = base + quadratic * range**2.
    dropout:                 per-point random loss; holes: count and radius range of
                             missing patches; outlier_fraction: flying pixels (label 0).
    max_points:              a scan with more points is randomly subsampled to this.
    """

    num_viewpoints: int = 6
    viewpoint_height: tuple[float, float] = (1.2, 1.8)
    sample_spacing: float = 0.026
    angular_resolution_deg: float = 0.5
    splat_factor: float = 3.5
    depth_tolerance: float = 0.03
    depth_tolerance_rel: float = 0.01
    min_range: float = 0.4
    max_range: float = 5.5
    full_density_range: float = 1.5
    density_falloff: float = 1.5
    max_incidence_deg: float = 80.0
    max_elevation_deg: float = 40.0
    noise_base: float = 0.002
    noise_quadratic: float = 0.0015
    dropout: float = 0.05
    holes: int = 8
    hole_radius: tuple[float, float] = (0.08, 0.3)
    outlier_fraction: float = 0.002
    max_points: int | None = 80_000

    def to_dict(self) -> dict:
        out = {}
        for key, value in self.__dict__.items():
            out[key] = list(value) if isinstance(value, tuple) else value
        return out


# ------------------------------------------------------------------ dense surface samples


def sample_room_surface(room: Room, rng: np.random.Generator, spacing: float) -> dict[str, np.ndarray]:
    """Area-weighted random samples on every part's faces that can face the interior.

    Faces whose centre lies outside the interior box grown by the wall thickness (outer
    wall faces, the underside of the floor slab) are skipped. Returns ``points (M, 3) float64``, ``normals (M, 3)
    float64`` (unit, outward), ``label (M,) int64`` and ``part (M,) int64``.
    """
    sx, sy, _ = _room_extent(room)
    tris, labels, owners = [], [], []
    for index, (mesh, label) in enumerate(room.parts):
        tri = mesh.vertices[mesh.faces]
        tris.append(tri)
        labels.append(np.full(len(tri), label, dtype=np.int64))
        owners.append(np.full(len(tri), index, dtype=np.int64))
    tri = np.concatenate(tris)
    label = np.concatenate(labels)
    owner = np.concatenate(owners)
    centre = tri.mean(axis=1)
    reach = WALL_THICKNESS - 0.005  # doors and windows sit inside the wall's thickness
    inside = (
        (centre[:, 0] > -reach) & (centre[:, 0] < sx + reach)
        & (centre[:, 1] > -reach) & (centre[:, 1] < sy + reach) & (centre[:, 2] > -0.005)
    )
    tri, label, owner = tri[inside], label[inside], owner[inside]
    cross = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
    double_area = np.linalg.norm(cross, axis=1)
    keep = double_area > 1e-12
    tri, label, owner, cross, double_area = tri[keep], label[keep], owner[keep], cross[keep], double_area[keep]
    normal = cross / double_area[:, None]
    expected = 0.5 * double_area / spacing**2
    counts = np.floor(expected + rng.random(len(expected))).astype(np.int64)
    face = np.repeat(np.arange(len(tri)), counts)
    u, v = rng.random(len(face)), rng.random(len(face))
    flip = u + v > 1
    u[flip], v[flip] = 1 - u[flip], 1 - v[flip]
    t = tri[face]
    points = t[:, 0] + u[:, None] * (t[:, 1] - t[:, 0]) + v[:, None] * (t[:, 2] - t[:, 0])
    return {"points": points, "normals": normal[face], "label": label[face], "part": owner[face]}


def _room_extent(room: Room) -> tuple[float, float, float]:
    if room.size and room.size[0] > 0:
        return tuple(float(s) for s in room.size)
    floor = [m for m, label in room.parts if label == FLOOR]
    lo, hi = _bounds_of(floor or [m for m, _ in room.parts])
    return float(hi[0]), float(hi[1]), float(hi[2])


def _bounds_of(meshes) -> tuple[np.ndarray, np.ndarray]:
    lows, highs = zip(*(m.bounds() for m in meshes))
    return np.min(lows, axis=0), np.max(highs, axis=0)


# ------------------------------------------------------------------ viewpoints


def choose_viewpoints(room: Room, rng: np.random.Generator, cfg: ScannerConfig) -> np.ndarray:
    """(V, 3) float64 sensor positions in free floor space, spread by farthest-point sampling."""
    sx, sy, height = _room_extent(room)
    margin = min(0.5, 0.3 * min(sx, sy))
    cand = np.stack([rng.uniform(margin, sx - margin, 400), rng.uniform(margin, sy - margin, 400)], axis=1)
    boxes = []
    for mesh, label in room.parts:
        if label in _NOT_OBSTACLES:
            continue
        lo, hi = mesh.bounds()
        if lo[2] > 1.9:
            continue
        boxes.append((lo[0] - 0.25, lo[1] - 0.25, hi[0] + 0.25, hi[1] + 0.25))
    free = np.ones(len(cand), dtype=bool)
    for x0, y0, x1, y1 in boxes:
        free &= ~((cand[:, 0] > x0) & (cand[:, 0] < x1) & (cand[:, 1] > y0) & (cand[:, 1] < y1))
    pool = cand[free] if free.sum() >= cfg.num_viewpoints else cand
    centre = np.array([sx / 2, sy / 2])
    chosen = [int(np.argmin(np.linalg.norm(pool - centre, axis=1)))]
    dist = np.linalg.norm(pool - pool[chosen[0]], axis=1)
    while len(chosen) < min(cfg.num_viewpoints, len(pool)):
        nxt = int(np.argmax(dist))
        chosen.append(nxt)
        dist = np.minimum(dist, np.linalg.norm(pool - pool[nxt], axis=1))
    z = rng.uniform(*cfg.viewpoint_height, size=len(chosen))
    z = np.minimum(z, height - 0.2)
    return np.column_stack([pool[chosen], z])


# ------------------------------------------------------------------ visibility


def visible_from(
    points: np.ndarray,
    normals: np.ndarray,
    eye: np.ndarray,
    cfg: ScannerConfig,
    surface: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Which dense samples a sensor at ``eye`` (3,) sees, by a spherical depth buffer.

    points, normals: (M, 3) float64 dense samples and their outward unit normals.
    surface:         (M,) int64 id of the part each sample lies on (None: all one part).
    Each front-facing sample within range is splatted (a disc of its surface footprint)
    into bins of ``angular_resolution_deg``; each bin keeps its nearest range and the part
    that has it. A sample is visible if its range is within ``depth_tolerance +
    depth_tolerance_rel * range`` of its bin's nearest range or, when that nearest range
    belongs to its own part, within that plus the range its surface spans across the bin
    (oblique surfaces), so a surface never hides itself but hides everything behind it.
    Returns (indices (K,) int64 of visible samples, their ranges (K,), cos incidence (K,)).
    """
    ray = points - eye
    rng_ = np.linalg.norm(ray, axis=1)
    rng_ = np.maximum(rng_, 1e-9)
    cos_inc = -np.einsum("ij,ij->i", ray, normals) / rng_
    # every front-facing sample occludes (even when too near, too oblique or too high to be
    # measured itself); back faces of closed parts lie behind their own front faces
    cand = np.flatnonzero((cos_inc > 0) & (rng_ <= cfg.max_range))
    if len(cand) == 0:
        empty = np.zeros(0)
        return cand, empty, empty
    r = rng_[cand]
    part = np.zeros(len(cand), dtype=np.int64) if surface is None else np.asarray(surface, dtype=np.int64)[cand]
    d = ray[cand] / r[:, None]
    delta = np.radians(cfg.angular_resolution_deg)
    n_az = int(np.ceil(2 * np.pi / delta))
    n_el = int(np.ceil(np.pi / delta)) + 1
    ia = np.floor((np.arctan2(d[:, 1], d[:, 0]) + np.pi) / delta).astype(np.int64) % n_az
    ie = np.clip(np.floor((np.arcsin(np.clip(d[:, 2], -1, 1)) + np.pi / 2) / delta).astype(np.int64), 0, n_el - 1)
    own = ie * n_az + ia
    # nearest range and its part in one sortable key: millimetres above, part id below
    key = (np.round(r * 1000).astype(np.int64) << _PART_BITS) | part
    # each sample stands for a disc of radius `splat` metres: it occludes every bin that
    # disc covers (k bins around its own), so sparse random samples leave no see-through gaps
    splat = cfg.splat_factor * cfg.sample_spacing / 2
    k = np.clip(np.ceil(splat / (r * delta) - 0.5), 0, _MAX_SPLAT_BINS).astype(np.int64)
    empty_key = np.int64(1) << 50  # "nothing here" (kept well inside float64 precision)
    zbuf = np.full(n_az * n_el, empty_key, dtype=np.int64)
    for level in np.unique(k):
        sel = k == level
        layer = np.full(n_az * n_el, empty_key, dtype=np.int64)
        np.minimum.at(layer, own[sel], key[sel])
        if level > 0:
            size = 2 * int(level) + 1
            layer = minimum_filter(layer.reshape(n_el, n_az), size=size, mode=("nearest", "wrap")).ravel()
        np.minimum(zbuf, layer, out=zbuf)
    nearest = zbuf[own]
    z_range = (nearest >> _PART_BITS).astype(np.float64) / 1000.0
    same_part = (nearest & ((1 << _PART_BITS) - 1)) == part
    c = cos_inc[cand]
    tan_inc = np.sqrt(np.clip(1 - c**2, 0, None)) / np.maximum(c, 1e-3)
    tol = cfg.depth_tolerance + cfg.depth_tolerance_rel * r + 0.001
    # an oblique surface spans this much range across its splat and its bin
    slope = (np.minimum(splat, (k + 0.5) * r * delta) + r * delta) * np.minimum(tan_inc, 6.0)
    seen = (r <= z_range + tol) | (same_part & (r <= z_range + tol + slope))
    seen &= (
        (c > np.cos(np.radians(cfg.max_incidence_deg)))
        & (r >= cfg.min_range)
        & (d[:, 2] <= np.sin(np.radians(cfg.max_elevation_deg)))
    )
    return cand[seen], r[seen], c[seen]


# ------------------------------------------------------------------ the scan


_PALETTE = {  # label -> candidate base colours (RGB)
    1: [(205, 200, 190), (225, 222, 210), (190, 195, 200), (215, 205, 180)],
    2: [(150, 120, 90), (120, 110, 100), (170, 160, 140), (90, 80, 75)],
    3: [(160, 120, 80), (220, 220, 215), (120, 90, 60)],
    4: [(200, 190, 180), (120, 130, 160), (220, 210, 200)],
    5: [(40, 40, 45), (130, 90, 60), (60, 80, 120), (150, 40, 40)],
    6: [(110, 100, 90), (60, 70, 90), (150, 130, 110)],
    7: [(150, 110, 70), (200, 190, 170), (90, 70, 50)],
    8: [(170, 130, 90), (230, 230, 225), (120, 80, 50)],
    9: [(235, 235, 235), (200, 200, 205)],
    10: [(140, 100, 60), (200, 180, 150), (80, 60, 40)],
    11: [(90, 120, 150), (180, 140, 100), (60, 60, 60)],
    14: [(170, 130, 90), (210, 210, 205), (90, 70, 60)],
    16: [(180, 160, 130), (120, 140, 170), (210, 200, 190)],
    18: [(220, 210, 190), (180, 90, 80), (90, 120, 140)],
    33: [(240, 240, 240)],
    34: [(235, 235, 235), (200, 200, 205)],
    36: [(240, 240, 238)],
}


def _part_colours(room: Room, rng: np.random.Generator) -> np.ndarray:
    """(parts, 3) float64 base colour of each part."""
    out = np.empty((len(room.parts), 3))
    for i, (_, label) in enumerate(room.parts):
        choices = _PALETTE.get(label)
        if choices is None:
            out[i] = rng.integers(40, 230, size=3)
        else:
            out[i] = np.asarray(choices[int(rng.integers(0, len(choices)))], dtype=np.float64)
    return out


def scan_room(
    room: Room, rng: np.random.Generator, cfg: ScannerConfig | None = None, viewpoints: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Simulate a depth-sensor scan of ``room``.

    viewpoints: optional (V, 3) sensor positions; by default ``choose_viewpoints``.
    Returns ``coord (N, 3) float32`` (metres, z up, floor at z = 0), ``color (N, 3) uint8``
    and ``label (N,) int64`` (NYU40 ids; 0 for flying-pixel outliers).
    """
    cfg = cfg or ScannerConfig()
    dense = sample_room_surface(room, rng, cfg.sample_spacing)
    points, normals = dense["points"], dense["normals"]
    if viewpoints is None:
        eyes = choose_viewpoints(room, rng, cfg)
    else:
        eyes = np.asarray(viewpoints, dtype=np.float64).reshape(-1, 3)
    best_range = np.full(len(points), np.inf)
    best_eye = np.zeros(len(points), dtype=np.int64)
    for e, eye in enumerate(eyes):
        idx, r, cos_inc = visible_from(points, normals, eye, cfg, dense["part"])
        keep_p = np.minimum(1.0, (cfg.full_density_range / r) ** cfg.density_falloff) * (0.55 + 0.45 * cos_inc)
        kept = rng.random(len(idx)) < keep_p
        idx, r = idx[kept], r[kept]
        better = r < best_range[idx]
        best_range[idx[better]] = r[better]
        best_eye[idx[better]] = e
    sel = np.flatnonzero(np.isfinite(best_range))
    sel = sel[rng.random(len(sel)) >= cfg.dropout]
    # holes: patches the operator never covered
    if cfg.holes and len(sel):
        centres = points[sel[rng.integers(0, len(sel), size=cfg.holes)]]
        radii = rng.uniform(*cfg.hole_radius, size=(cfg.holes, 3))  # irregular: ellipsoids
        keep = np.ones(len(sel), dtype=bool)
        for c, rad in zip(centres, radii):
            keep &= np.sum(((points[sel] - c) / rad) ** 2, axis=1) > 1.0
        sel = sel[keep]
    if cfg.max_points is not None and len(sel) > cfg.max_points:
        sel = np.sort(rng.choice(sel, size=cfg.max_points, replace=False))
    eye = eyes[best_eye[sel]]
    ray = points[sel] - eye
    r = np.linalg.norm(ray, axis=1)
    unit = ray / r[:, None]
    sigma = cfg.noise_base + cfg.noise_quadratic * r**2
    coord = points[sel] + unit * (rng.normal(size=len(sel)) * sigma)[:, None]
    label = dense["label"][sel].copy()
    n_out = int(round(cfg.outlier_fraction * len(sel)))
    if n_out:
        which = rng.choice(len(sel), size=n_out, replace=False)
        jump = rng.uniform(0.1, 0.8, size=n_out) * rng.choice([-1, 1], size=n_out)
        coord[which] += unit[which] * jump[:, None]
        label[which] = 0
    base = _part_colours(room, rng)[dense["part"][sel]]
    light = np.array([0.3, -0.4, 0.87])
    shade = 0.65 + 0.35 * np.abs(normals[sel] @ light)
    color = base * shade[:, None] + rng.normal(0, 6, size=(len(sel), 3))
    order = rng.permutation(len(sel))
    return {
        "coord": coord[order].astype(np.float32),
        "color": np.clip(np.rint(color[order]), 0, 255).astype(np.uint8),
        "label": label[order].astype(np.int64),
    }
