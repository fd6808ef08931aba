"""Closed triangle-mesh primitives for the synthetic data (boxes, solids of revolution...).

Every function returns a :class:`~cad2scan.geometry.mesh.Mesh` that is a closed 2-manifold
(each edge shared by exactly two faces) with faces wound counter-clockwise seen from
outside, so its signed volume is positive. A model is a list of such parts concatenated
with ``Mesh.concatenate``; overlapping parts are fine.

Coordinates are whatever the caller uses (metres in this package), z up.
"""

from __future__ import annotations

import numpy as np

from cad2scan.geometry.mesh import Mesh

# The 12 triangles of the unit cube [0, 1]^3, outward, with vertex i = (i&1, i>>1&1, i>>2&1).
_CUBE_FACES = np.array(
    [
        [0, 2, 1], [1, 2, 3],  # z = 0 (normal -z)
        [4, 5, 6], [5, 7, 6],  # z = 1
        [0, 1, 4], [1, 5, 4],  # y = 0
        [2, 6, 3], [3, 6, 7],  # y = 1
        [0, 4, 2], [2, 4, 6],  # x = 0
        [1, 3, 5], [3, 7, 5],  # x = 1
    ],
    dtype=np.int64,
)


# ---------------------------------------------------------------- rotations and transforms


def rotation_z(angle: float) -> np.ndarray:
    """(3, 3) float64 rotation by ``angle`` radians about +z."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_x(angle: float) -> np.ndarray:
    """(3, 3) float64 rotation by ``angle`` radians about +x."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]])


def rotation_y(angle: float) -> np.ndarray:
    """(3, 3) float64 rotation by ``angle`` radians about +y."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def rotation_from_z(direction: np.ndarray) -> np.ndarray:
    """(3, 3) rotation taking +z onto the unit vector along ``direction`` (3,)."""
    d = np.asarray(direction, dtype=np.float64)
    d = d / np.linalg.norm(d)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, d)
    s, c = np.linalg.norm(axis), float(np.dot(z, d))
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = axis / s
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * kx + (1 - c) * (kx @ kx)


def transform(
    mesh: Mesh,
    rotation: np.ndarray | None = None,
    translation=None,
    scale=None,
) -> Mesh:
    """A new mesh with vertices ``R @ (scale * v) + t``.

    rotation:    (3, 3) matrix or None.
    translation: (3,) or None.
    scale:       scalar or (3,) per-axis factors, applied first. A mirroring scale
                 (negative product) flips the face winding so the normals stay outward.
    """
    v = mesh.vertices.copy()
    faces = mesh.faces.copy()
    if scale is not None:
        s = np.broadcast_to(np.asarray(scale, dtype=np.float64), (3,))
        v = v * s
        if np.prod(s) < 0:
            faces = faces[:, ::-1].copy()
    if rotation is not None:
        v = v @ np.asarray(rotation, dtype=np.float64).T
    if translation is not None:
        v = v + np.asarray(translation, dtype=np.float64)
    return Mesh(v, faces)


def merge(parts: list[Mesh]) -> Mesh:
    """Concatenate closed parts into one mesh (alias of ``Mesh.concatenate``)."""
    return Mesh.concatenate(list(parts))


# ---------------------------------------------------------------- boxes


def box(lo, hi) -> Mesh:
    """Axis-aligned box between corners ``lo`` (3,) and ``hi`` (3,), 8 vertices, 12 faces."""
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    idx = np.arange(8)
    unit = np.stack([idx & 1, (idx >> 1) & 1, (idx >> 2) & 1], axis=1).astype(np.float64)
    return Mesh(lo + unit * (hi - lo), _CUBE_FACES.copy())


def box_centered(size, center=(0.0, 0.0, 0.0), angle_z: float = 0.0) -> Mesh:
    """Box of ``size`` (3,) centred at ``center`` (3,), rotated ``angle_z`` about its centre."""
    half = np.asarray(size, dtype=np.float64) / 2.0
    mesh = box(-half, half)
    return transform(mesh, rotation_z(angle_z) if angle_z else None, translation=center)


def beam(p0, p1, width: float, height: float | None = None) -> Mesh:
    """Square-section bar from point ``p0`` (3,) to ``p1`` (3,) (e.g. a slanted leg)."""
    p0 = np.asarray(p0, dtype=np.float64)
    p1 = np.asarray(p1, dtype=np.float64)
    length = float(np.linalg.norm(p1 - p0))
    h = width if height is None else height
    mesh = box([-width / 2, -h / 2, 0.0], [width / 2, h / 2, length])
    return transform(mesh, rotation_from_z(p1 - p0), translation=p0)


# ---------------------------------------------------------------- solids of revolution


def revolve(profile, segments: int = 16) -> Mesh:
    """Solid of revolution about +z from a profile of (radius, z) points.

    profile:  (K, 2) points listed counter-clockwise in the (r, z) half-plane, e.g.
              bottom-centre -> outer wall upwards -> top-centre. Inner points need r > 0;
              if the first / last point is off the axis, it is closed by a flat cap.
    segments: number of angular steps (>= 3).
    Returns a closed mesh; (segments * rings + 2) vertices.
    """
    prof = np.asarray(profile, dtype=np.float64).reshape(-1, 2)
    if prof[0, 0] > 0:
        prof = np.vstack([[0.0, prof[0, 1]], prof])
    if prof[-1, 0] > 0:
        prof = np.vstack([prof, [0.0, prof[-1, 1]]])
    rings = prof[1:-1]
    if len(rings) == 0 or np.any(rings[:, 0] <= 0):
        raise ValueError("revolve: inner profile points need a positive radius")
    theta = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    cos, sin = np.cos(theta), np.sin(theta)
    ring_v = np.stack(
        [
            rings[:, :1] * cos[None, :],
            rings[:, :1] * sin[None, :],
            np.broadcast_to(rings[:, 1:2], (len(rings), segments)),
        ],
        axis=-1,
    ).reshape(-1, 3)
    bottom = len(ring_v)
    top = bottom + 1
    vertices = np.vstack([ring_v, [[0.0, 0.0, prof[0, 1]], [0.0, 0.0, prof[-1, 1]]]])
    j = np.arange(segments)
    jn = (j + 1) % segments
    faces = [np.stack([np.full(segments, bottom), jn, j], axis=1)]
    for i in range(len(rings) - 1):
        a, b = i * segments + j, i * segments + jn
        c, d = (i + 1) * segments + j, (i + 1) * segments + jn
        faces.append(np.stack([a, b, d], axis=1))
        faces.append(np.stack([a, d, c], axis=1))
    last = (len(rings) - 1) * segments
    faces.append(np.stack([np.full(segments, top), last + j, last + jn], axis=1))
    return Mesh(vertices, np.concatenate(faces))


def revolve_loop(loop, segments: int = 16) -> Mesh:
    """Ring-shaped (torus-topology) solid from a closed loop of (r, z) points, all r > 0.

    loop: (K, 2) counter-clockwise in the (r, z) half-plane, not repeating the first point.
    """
    pts = np.asarray(loop, dtype=np.float64).reshape(-1, 2)
    if np.any(pts[:, 0] <= 0):
        raise ValueError("revolve_loop: every loop point needs a positive radius")
    k = len(pts)
    theta = np.linspace(0.0, 2 * np.pi, segments, endpoint=False)
    vertices = np.stack(
        [
            pts[:, :1] * np.cos(theta)[None, :],
            pts[:, :1] * np.sin(theta)[None, :],
            np.broadcast_to(pts[:, 1:2], (k, segments)),
        ],
        axis=-1,
    ).reshape(-1, 3)
    i = np.repeat(np.arange(k), segments)
    j = np.tile(np.arange(segments), k)
    a = i * segments + j
    b = i * segments + (j + 1) % segments
    c = ((i + 1) % k) * segments + j
    d = ((i + 1) % k) * segments + (j + 1) % segments
    faces = np.concatenate([np.stack([a, b, d], 1), np.stack([a, d, c], 1)])
    return Mesh(vertices, faces)


def cylinder(radius: float, height: float, segments: int = 16, base=(0.0, 0.0, 0.0)) -> Mesh:
    """Capped upright cylinder standing on ``base`` (3,)."""
    return frustum(radius, radius, height, segments, base)


def frustum(
    r_bottom: float, r_top: float, height: float, segments: int = 16, base=(0.0, 0.0, 0.0)
) -> Mesh:
    """Capped upright cone frustum standing on ``base`` (3,); ``r_top = 0`` gives a cone."""
    if r_bottom <= 0 and r_top <= 0:
        raise ValueError("frustum: one radius must be positive")
    profile = [(0.0, 0.0)] + ([(r_bottom, 0.0)] if r_bottom > 0 else [])
    profile += [(r_top, height)] if r_top > 0 else []
    profile += [(0.0, height)]
    return transform(revolve(profile, segments), translation=base)


def cylinder_between(p0, p1, radius: float, segments: int = 12) -> Mesh:
    """Capped cylinder with axis from ``p0`` (3,) to ``p1`` (3,) (rods, tubes, slanted legs)."""
    p0 = np.asarray(p0, dtype=np.float64)
    p1 = np.asarray(p1, dtype=np.float64)
    length = float(np.linalg.norm(p1 - p0))
    mesh = cylinder(radius, length, segments)
    return transform(mesh, rotation_from_z(p1 - p0), translation=p0)


def sphere(radius: float = 1.0, segments: int = 16, rings: int = 8, center=(0.0, 0.0, 0.0)) -> Mesh:
    """Low-poly UV sphere (``rings`` latitude steps) centred at ``center``."""
    phi = np.linspace(-np.pi / 2, np.pi / 2, rings + 1)
    profile = np.stack([np.cos(phi), np.sin(phi)], axis=1) * radius
    profile[0, 0] = profile[-1, 0] = 0.0
    return transform(revolve(profile, segments), translation=center)


def ellipsoid(radii, segments: int = 16, rings: int = 8, center=(0.0, 0.0, 0.0)) -> Mesh:
    """Ellipsoid with semi-axes ``radii`` (3,) centred at ``center``."""
    return transform(sphere(1.0, segments, rings), scale=radii, translation=center)


def superellipsoid(
    size, exponent: float = 0.3, segments: int = 16, rings: int = 8, center=(0.0, 0.0, 0.0)
) -> Mesh:
    """Rounded box (cushions, mattresses, bags): |x|^(2/e) + ... = 1 scaled to ``size`` (3,).

    exponent: 1 gives an ellipsoid, values towards 0 give an ever sharper box.
    """
    unit = sphere(1.0, segments, rings)
    v = unit.vertices
    v = np.sign(v) * np.abs(v) ** exponent
    v = v * (np.asarray(size, dtype=np.float64) / 2.0) + np.asarray(center, dtype=np.float64)
    return Mesh(v, unit.faces.copy())


def torus(
    major_radius: float, minor_radius: float, segments: int = 16, tube_segments: int = 8
) -> Mesh:
    """Torus about +z centred at the origin."""
    t = np.linspace(0.0, 2 * np.pi, tube_segments, endpoint=False)
    loop = np.stack([major_radius + minor_radius * np.cos(t), minor_radius * np.sin(t)], axis=1)
    return revolve_loop(loop, segments)


# ---------------------------------------------------------------- prisms and thin sheets


def _triangulate_polygon(poly: np.ndarray) -> np.ndarray:
    """(K-2, 3) ear-clipping triangulation of a simple counter-clockwise polygon (K, 2)."""
    remaining = list(range(len(poly)))
    triangles = []

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    guard = 0
    while len(remaining) > 3 and guard < 10 * len(poly) ** 2:
        guard += 1
        n = len(remaining)
        for k in range(n):
            i0, i1, i2 = remaining[k - 1], remaining[k], remaining[(k + 1) % n]
            a, b, c = poly[i0], poly[i1], poly[i2]
            if cross(a, b, c) <= 1e-12:
                continue
            inside = False
            for m in remaining:
                if m in (i0, i1, i2):
                    continue
                p = poly[m]
                if cross(a, b, p) >= 0 and cross(b, c, p) >= 0 and cross(c, a, p) >= 0:
                    inside = True
                    break
            if not inside:
                triangles.append((i0, i1, i2))
                remaining.pop(k)
                break
        else:
            raise ValueError("prism: polygon is not simple or not counter-clockwise")
    triangles.append(tuple(remaining))
    return np.asarray(triangles, dtype=np.int64)


def prism(polygon, z0: float, z1: float) -> Mesh:
    """Vertical extrusion of a simple polygon (K, 2) (either winding) from ``z0`` to ``z1``."""
    poly = np.asarray(polygon, dtype=np.float64).reshape(-1, 2)
    x, y = poly[:, 0], poly[:, 1]
    if 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) < 0:
        poly = poly[::-1].copy()
    k = len(poly)
    tri = _triangulate_polygon(poly)
    vertices = np.vstack([np.c_[poly, np.full(k, z0)], np.c_[poly, np.full(k, z1)]])
    i = np.arange(k)
    j = (i + 1) % k
    sides = np.concatenate([np.stack([i, j, j + k], 1), np.stack([i, j + k, i + k], 1)])
    faces = np.concatenate([tri[:, ::-1], tri + k, sides])
    return Mesh(vertices, faces)


def thick_sheet(grid, offset) -> Mesh:
    """Closed thin shell around a grid surface (curtains, blankets, bent panels).

    grid:   (U, V, 3) surface points (U, V >= 2), no self-intersections.
    offset: (3,) direction and half-thickness, or (U, V, 3) per point: the two layers are
            ``grid + offset`` and ``grid - offset``. Winding is fixed to be outward.
    """
    g = np.asarray(grid, dtype=np.float64)
    nu, nv = g.shape[:2]
    off = np.broadcast_to(np.asarray(offset, dtype=np.float64), g.shape)
    front = (g + off).reshape(-1, 3)
    back = (g - off).reshape(-1, 3)
    n = nu * nv
    vertices = np.vstack([front, back])

    def idx(u, v):
        return u * nv + v

    u, v = np.meshgrid(np.arange(nu - 1), np.arange(nv - 1), indexing="ij")
    u, v = u.ravel(), v.ravel()
    a, b, c, d = idx(u, v), idx(u + 1, v), idx(u + 1, v + 1), idx(u, v + 1)
    top = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    bottom = top[:, ::-1] + n
    # boundary loop of the grid, in order, then a quad strip joining the two layers
    loop = np.concatenate(
        [
            idx(np.arange(nu - 1), 0),
            idx(nu - 1, np.arange(nv - 1)),
            idx(np.arange(nu - 1, 0, -1), nv - 1),
            idx(0, np.arange(nv - 1, 0, -1)),
        ]
    )
    p, q = loop, np.roll(loop, -1)
    rim = np.concatenate([np.stack([p, p + n, q + n], 1), np.stack([p, q + n, q], 1)])
    mesh = Mesh(vertices, np.concatenate([top, bottom, rim]))
    if signed_volume(mesh) < 0:
        mesh.faces = mesh.faces[:, ::-1].copy()
    return mesh


# ---------------------------------------------------------------- checks


def signed_volume(mesh: Mesh) -> float:
    """Signed volume (divergence theorem); positive for a closed, outward-wound mesh."""
    a, b, c = (mesh.vertices[mesh.faces[:, i]] for i in range(3))
    return float(np.einsum("ij,ij->i", a, np.cross(b, c)).sum() / 6.0)


def edge_use_counts(mesh: Mesh) -> np.ndarray:
    """(E,) how many faces use each undirected edge (all 2 for a closed 2-manifold)."""
    f = mesh.faces
    edges = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    edges = np.sort(edges, axis=1)
    _, counts = np.unique(edges, axis=0, return_counts=True)
    return counts


def is_closed_outward(mesh: Mesh) -> bool:
    """True when every directed edge has exactly one opposite twin and the volume is positive.

    Checks each part's consistency at once: for a closed, consistently wound surface each
    directed edge (a, b) appears once and (b, a) appears once.
    """
    f = mesh.faces
    if len(f) == 0:
        return False
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    key = directed[:, 0] * (len(mesh.vertices) + 1) + directed[:, 1]
    twin = directed[:, 1] * (len(mesh.vertices) + 1) + directed[:, 0]
    uniq, counts = np.unique(key, return_counts=True)
    if np.any(counts != 1):
        return False
    if not np.all(np.isin(twin, uniq)):
        return False
    return signed_volume(mesh) > 0
