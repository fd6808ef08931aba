"""Parametric builders for more ModelNet40 non-target ("negative") classes.

Negatives are the only source of the background class during training, so this module
widens the library with the large, flat and architectural things real rooms are full of
(dressers, TV stands, benches, stairs, mantels, range hoods, glass cases, pianos) and
with smaller clutter (stools, radios, keyboards, laptops, flower pots), a tent and a
posed person. Each builder draws random proportions and optional parts from ``rng``.

Same conventions as :mod:`cad2scan.synth.cad_shapes`: a builder returns a list of
closed, outward-wound parts in metres, z up, front towards -y, roughly centred; the
caller recentres, drops the model onto z = 0, rotates and rescales it.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from cad2scan.geometry.mesh import Mesh
from cad2scan.synth import primitives as P
from cad2scan.synth.randparts import chance as _chance
from cad2scan.synth.randparts import rotate_about as _about
from cad2scan.synth.randparts import uniform as _u
from cad2scan.synth.randparts import upright_post as _post


def _limb(p0, p1, r0: float, r1: float, segments: int = 10) -> Mesh:
    """Tapered rod from ``p0`` (3,) (radius r0) to ``p1`` (3,) (radius r1)."""
    p0 = np.asarray(p0, dtype=np.float64)
    p1 = np.asarray(p1, dtype=np.float64)
    rod = P.frustum(r0, r1, float(np.linalg.norm(p1 - p0)), segments)
    return P.transform(rod, P.rotation_from_z(p1 - p0), translation=p0)


def _tapered_box(bottom, top, z0: float, z1: float) -> Mesh:
    """Hexahedron with rectangle ``bottom`` (x0, y0, x1, y1) at z0 and ``top`` at z1.

    Both rectangles need x0 < x1 and y0 < y1 (hoods, splayed planters, wedges).
    """
    bx0, by0, bx1, by1 = bottom
    tx0, ty0, tx1, ty1 = top
    mesh = P.box([0.0, 0.0, z0], [1.0, 1.0, z1])
    v = mesh.vertices
    fx, fy = v[:, 0].copy(), v[:, 1].copy()
    upper = v[:, 2] > (z0 + z1) / 2
    v[:, 0] = np.where(upper, tx0 + fx * (tx1 - tx0), bx0 + fx * (bx1 - bx0))
    v[:, 1] = np.where(upper, ty0 + fy * (ty1 - ty0), by0 + fy * (by1 - by0))
    return mesh


def _extrude_xz(polygon, y0: float, y1: float) -> Mesh:
    """Prism of a simple polygon (K, 2) of (x, z) points, extruded along y from y0 to y1."""
    return P.transform(P.prism(polygon, -y1, -y0), P.rotation_x(np.pi / 2))


def _pulls(x0: float, x1: float, z0: float, z1: float, y_front: float, kind: str) -> list[Mesh]:
    """Handle(s) centred on a front panel at y = y_front (panel facing -y)."""
    xc, zc = (x0 + x1) / 2, (z0 + z1) / 2
    if kind == "bar":
        half = min(0.07, (x1 - x0) * 0.3)
        return [P.box([xc - half, y_front - 0.022, zc - 0.008], [xc + half, y_front + 0.001, zc + 0.008])]
    if kind == "knob":
        return [P.sphere(0.016, 8, 4, center=(xc, y_front - 0.012, zc))]
    return []  # push-to-open


def _drawer_grid(
    x0: float, x1: float, y_front: float, z0: float, z1: float, rows: int, cols: int, pull: str
) -> list[Mesh]:
    """rows x cols drawer fronts (thin boxes standing 15 mm proud of y_front) with pulls."""
    parts = []
    dx, dz = (x1 - x0) / cols, (z1 - z0) / rows
    for i in range(cols):
        for j in range(rows):
            a, b = x0 + i * dx + 0.004, x0 + (i + 1) * dx - 0.004
            c, d = z0 + j * dz + 0.004, z0 + (j + 1) * dz - 0.004
            parts.append(P.box([a, y_front - 0.015, c], [b, y_front + 0.001, d]))
            parts += _pulls(a, b, c, d, y_front - 0.015, pull)
    return parts


# ------------------------------------------------------------------ case furniture


def _dresser(rng: np.random.Generator) -> list[Mesh]:
    """Wide chest of drawers on a plinth, legs or bun feet; drawer layouts; optional mirror."""
    w, d, h = _u(rng, 0.75, 1.8), _u(rng, 0.4, 0.55), _u(rng, 0.7, 1.3)
    base = rng.choice(["plinth", "legs", "bun_feet"])
    foot_h = _u(rng, 0.04, 0.1) if base == "plinth" else _u(rng, 0.06, 0.2)
    top_t, over = _u(rng, 0.02, 0.04), _u(rng, 0.0, 0.03)
    parts = [
        P.box([-w / 2, -d / 2, foot_h], [w / 2, d / 2, h - top_t]),
        P.box([-w / 2 - over, -d / 2 - over, h - top_t], [w / 2 + over, d / 2 + over, h]),
    ]
    corners = [(sx * (w / 2 - 0.05), sy * (d / 2 - 0.05)) for sx in (-1, 1) for sy in (-1, 1)]
    if base == "plinth":
        parts.append(P.box([-w / 2 + 0.02, -d / 2 + 0.02, 0], [w / 2 - 0.02, d / 2 - 0.02, foot_h + 0.005]))
    elif base == "legs":
        t, round_ = _u(rng, 0.03, 0.05), _chance(rng, 0.4)
        parts += [_post(round_, x, y, 0.0, foot_h + 0.005, t) for x, y in corners]
    else:
        r = foot_h / 2
        parts += [P.sphere(r, 10, 5, center=(x, y, r)) for x, y in corners]
    pull = str(rng.choice(["bar", "knob", "none"]))
    z0, z1 = foot_h + 0.02, h - top_t - 0.015
    cols = 1 if w < 1.0 else int(rng.choice([1, 2, 2, 3]))
    rows = int(rng.integers(2, 6))
    if cols > 1 and rows > 2 and _chance(rng, 0.5):  # a row of small drawers over wide ones
        split = z1 - (z1 - z0) / rows
        parts += _drawer_grid(-w / 2, w / 2, -d / 2, split, z1, 1, cols, pull)
        parts += _drawer_grid(-w / 2, w / 2, -d / 2, z0, split, rows - 1, 1, pull)
    else:
        parts += _drawer_grid(-w / 2, w / 2, -d / 2, z0, z1, rows, cols, pull)
    if h < 0.95 and _chance(rng, 0.4):  # mirror standing on the back of a low dresser
        mw, mh = w * _u(rng, 0.5, 0.9), _u(rng, 0.4, 0.7)
        frame = _u(rng, 0.03, 0.06)
        parts += [
            P.box([-mw / 2, d / 2 - 0.05, h], [mw / 2, d / 2 - 0.02, h + mh]),
            P.box([-mw / 2 + frame, d / 2 - 0.056, h + frame], [mw / 2 - frame, d / 2 - 0.045, h + mh - frame]),
        ]
    return parts


def _tv_stand(rng: np.random.Generator) -> list[Mesh]:
    """Low media cabinet with bays (open, shelf, door, drawers), or an open post-and-shelf frame."""
    w, d, h = _u(rng, 1.0, 2.2), _u(rng, 0.35, 0.5), _u(rng, 0.35, 0.65)
    t = _u(rng, 0.018, 0.035)
    if _chance(rng, 0.25):  # open frame: posts and two or three shelves
        post, round_ = _u(rng, 0.025, 0.05), _chance(rng, 0.5)
        xs = (-w / 2 + post / 2, w / 2 - post / 2)
        ys = (-d / 2 + post / 2, d / 2 - post / 2)
        parts = [_post(round_, x, y, 0.0, h, post) for x in xs for y in ys]
        n = int(rng.integers(2, 4))
        for z in np.linspace(_u(rng, 0.03, 0.15), h - t, n):
            parts.append(P.box([-w / 2, -d / 2, z], [w / 2, d / 2, z + t]))
        return parts
    leg_h = _u(rng, 0.08, 0.22) if _chance(rng, 0.4) else 0.0
    parts = [
        P.box([-w / 2, -d / 2, h - t], [w / 2, d / 2, h]),
        P.box([-w / 2, -d / 2, leg_h], [w / 2, d / 2, leg_h + t]),
        P.box([-w / 2, -d / 2, leg_h], [-w / 2 + t, d / 2, h]),
        P.box([w / 2 - t, -d / 2, leg_h], [w / 2, d / 2, h]),
    ]
    if _chance(rng, 0.7):
        parts.append(P.box([-w / 2 + t, d / 2 - 0.008, leg_h + t], [w / 2 - t, d / 2, h - t]))
    if leg_h > 0:
        lt, splay = _u(rng, 0.03, 0.05), _u(rng, 0.0, 0.06)
        n_x = 3 if w > 1.7 else 2
        for x in np.linspace(-w / 2 + 0.06, w / 2 - 0.06, n_x):
            for sy in (-1, 1):
                top = (x, sy * (d / 2 - 0.05), leg_h + 0.005)
                foot = (x + np.sign(x) * splay, top[1] + sy * splay * 0.5, 0.0)
                parts.append(P.beam(foot, top, lt))
    if leg_h == 0 and _chance(rng, 0.5):  # recessed plinth under a raised carcass
        parts.append(P.box([-w / 2 + 0.03, -d / 2 + 0.03, -0.06], [w / 2 - 0.03, d / 2 - 0.03, 0.001]))
    bays = int(rng.integers(2, 5))
    edges = np.linspace(-w / 2 + t, w / 2 - t, bays + 1)
    for x in edges[1:-1]:
        parts.append(P.box([x - t / 2, -d / 2, leg_h + t], [x + t / 2, d / 2 - 0.008, h - t]))
    pull = str(rng.choice(["bar", "knob", "none"]))
    z0, z1 = leg_h + t, h - t
    for a, b in zip(edges[:-1], edges[1:]):
        kind = rng.choice(["open", "shelf", "door", "drawers"])
        if kind == "shelf":
            zm = (z0 + z1) / 2
            parts.append(P.box([a + t / 2, -d / 2 + 0.02, zm - t / 2], [b - t / 2, d / 2 - 0.008, zm + t / 2]))
        elif kind == "door":
            parts.append(P.box([a + 0.003, -d / 2 - 0.015, z0 + 0.003], [b - 0.003, -d / 2 + 0.001, z1 - 0.003]))
            parts += _pulls(a, b, z1 - 0.12, z1 - 0.04, -d / 2 - 0.015, pull)
        elif kind == "drawers":
            parts += _drawer_grid(a, b, -d / 2, z0, z1, int(rng.integers(1, 3)), 1, pull)
    return parts


def _bench(rng: np.random.Generator) -> list[Mesh]:
    """Backless seat (solid or slatted) on legs, slab ends, a trestle or U-frames; optional park-bench back."""
    length, depth, height = _u(rng, 0.9, 2.0), _u(rng, 0.3, 0.5), _u(rng, 0.38, 0.5)
    seat_t = _u(rng, 0.03, 0.07)
    under = height - seat_t
    parts: list[Mesh] = []
    if _chance(rng, 0.6):
        parts.append(P.box([-length / 2, -depth / 2, under], [length / 2, depth / 2, height]))
    else:  # slatted seat on cross bearers
        n = int(rng.integers(3, 7))
        gap = _u(rng, 0.005, 0.02)
        sw = (depth - gap * (n - 1)) / n
        for k in range(n):
            y0 = -depth / 2 + k * (sw + gap)
            parts.append(P.box([-length / 2, y0, under], [length / 2, y0 + sw, height]))
        for x in (-length / 2 + 0.08, length / 2 - 0.08):
            parts.append(P.box([x - 0.025, -depth / 2, under - 0.05], [x + 0.025, depth / 2, under + 0.001]))
    base = rng.choice(["legs", "legs", "slab_ends", "trestle", "frame"])
    if base == "legs":
        t, inset, round_ = _u(rng, 0.03, 0.06), _u(rng, 0.02, 0.08), _chance(rng, 0.4)
        n_x = 3 if length > 1.6 else 2
        for x in np.linspace(-length / 2 + inset + t / 2, length / 2 - inset - t / 2, n_x):
            for sy in (-1, 1):
                parts.append(_post(round_, float(x), sy * (depth / 2 - inset - t / 2), 0.0, under + 0.002, t))
        if _chance(rng, 0.35):  # lower shelf
            z = _u(rng, 0.08, 0.18)
            parts.append(P.box(
                [-length / 2 + inset, -depth / 2 + inset, z], [length / 2 - inset, depth / 2 - inset, z + 0.02],
            ))
    elif base == "slab_ends":
        t, inset = _u(rng, 0.03, 0.07), _u(rng, 0.0, 0.15)
        for sx in (-1, 1):
            x0, x1 = sorted((sx * (length / 2 - inset), sx * (length / 2 - inset - t)))
            parts.append(P.box([x0, -depth / 2, 0], [x1, depth / 2, under + 0.002]))
    elif base == "trestle":
        px = length / 2 - _u(rng, 0.1, 0.2)
        for sx in (-1, 1):
            x = sx * px
            parts.append(P.box([x - 0.03, -depth * 0.3, 0.04], [x + 0.03, depth * 0.3, under + 0.002]))
            parts.append(P.box([x - 0.04, -depth * 0.45, 0], [x + 0.04, depth * 0.45, 0.05]))
        parts.append(P.box([-px, -0.025, _u(rng, 0.1, 0.2)], [px, 0.025, 0.6 * under]))
    else:  # metal U-frames at both ends
        tube = _u(rng, 0.02, 0.04)
        for sx in (-1, 1):
            x = sx * (length / 2 - _u(rng, 0.05, 0.12))
            for sy in (-1, 1):
                y = sy * (depth / 2 - tube / 2)
                parts.append(P.box([x - tube / 2, y - tube / 2, 0], [x + tube / 2, y + tube / 2, under + 0.002]))
            parts.append(P.box([x - tube / 2, -depth / 2, 0], [x + tube / 2, depth / 2, tube]))
            parts.append(P.box([x - tube / 2, -depth / 2, under - tube], [x + tube / 2, depth / 2, under + 0.002]))
    if _chance(rng, 0.3):  # park-bench back (posts and rails, tilted back)
        back_h, tilt = _u(rng, 0.3, 0.5), _u(rng, 0.05, 0.3)
        post_x = [-length / 2 + 0.05, length / 2 - 0.05]
        back = [P.box([x - 0.025, depth / 2 - 0.04, height], [x + 0.025, depth / 2, height + back_h]) for x in post_x]
        for k in range(int(rng.integers(1, 4))):
            z = height + back_h - 0.03 - k * 0.12
            if z - 0.08 <= height:
                break
            back.append(P.box([-length / 2, depth / 2 - 0.06, z - 0.08], [length / 2, depth / 2 - 0.035, z]))
        parts += [_about(m, (0, depth / 2, height), P.rotation_x(-tilt)) for m in back]
        if _chance(rng, 0.5):  # arm rests
            arm_z = height + _u(rng, 0.18, 0.25)
            for x in post_x:
                parts.append(P.box([x - 0.03, -depth / 2, arm_z - 0.03], [x + 0.03, depth / 2, arm_z]))
                parts.append(P.box(
                    [x - 0.015, -depth / 2 + 0.03, height - 0.01], [x + 0.015, -depth / 2 + 0.06, arm_z],
                ))
    return parts


def _stool(rng: np.random.Generator) -> list[Mesh]:
    """Round or square seat on 3-4 (splayed) legs, a pedestal or a drum; optional foot rest, cushion."""
    height = _u(rng, 0.42, 0.82)
    seat_t = _u(rng, 0.03, 0.08)
    under = height - seat_t
    round_seat = _chance(rng, 0.65)
    r = _u(rng, 0.15, 0.22)
    parts = [P.cylinder(r, seat_t, 24, base=(0, 0, under)) if round_seat
             else P.box([-r, -r, under], [r, r, height])]
    if _chance(rng, 0.3):  # cushion
        parts.append(P.ellipsoid((r * 0.95, r * 0.95, 0.035), 16, 6, center=(0, 0, height)))
    base = rng.choice(["legs", "legs", "pedestal", "drum"])
    if base == "drum" and height > 0.55:  # a tall drum is a bin, not a stool
        base = "pedestal"
    if base == "legs":
        n = int(rng.choice([3, 4, 4]))
        splay, t = _u(rng, 0.0, 0.12), _u(rng, 0.022, 0.045)
        phase = np.pi / 4 if (n == 4 and not round_seat) else _u(rng, 0, 2 * np.pi)
        reach = r * (0.75 if round_seat else 1.0)
        round_legs = _chance(rng, 0.5)
        feet = []
        for k in range(n):
            a = phase + 2 * np.pi * k / n
            top = np.array([reach * np.cos(a), reach * np.sin(a), under + 0.002])
            foot = np.array([(reach + splay) * np.cos(a), (reach + splay) * np.sin(a), 0.0])
            parts.append(P.cylinder_between(foot, top, t / 2, 8) if round_legs else P.beam(foot, top, t))
            feet.append((foot, top))
        if height > 0.55 and _chance(rng, 0.7):  # foot rest
            f = _u(rng, 0.3, 0.45)
            z = under * f
            ring_r = reach + splay * (1 - f)
            if round_legs and _chance(rng, 0.6):
                parts.append(P.transform(P.torus(ring_r, 0.01, 24, 6), translation=(0, 0, z)))
            else:
                pts = [foot + (top - foot) * f for foot, top in feet]
                parts += [P.cylinder_between(pts[k], pts[(k + 1) % n], 0.01, 8) for k in range(n)]
    elif base == "pedestal":
        pole_r = _u(rng, 0.02, 0.04)
        parts.append(P.cylinder(pole_r, under, 12))
        parts.append(P.frustum(_u(rng, 0.17, 0.25), _u(rng, 0.05, 0.12), _u(rng, 0.02, 0.05), 24))
        if height > 0.55 and _chance(rng, 0.7):
            parts.append(P.transform(P.torus(_u(rng, 0.15, 0.2), 0.01, 24, 6), translation=(0, 0, under * 0.38)))
            parts += [P.cylinder_between(
                (0, 0, under * 0.38), (0.16 * sx, 0, under * 0.38), 0.008, 6,
            ) for sx in (-1, 1)]
    else:  # solid drum / pouf
        rb = r * _u(rng, 0.7, 1.0)
        parts.append(P.frustum(rb, r * 0.95, under + 0.002, 24))
    return parts


# ------------------------------------------------------------------ architectural


def _stairs(rng: np.random.Generator) -> list[Mesh]:
    """A straight flight (solid blocks or open treads on stringers) or a spiral; optional hand rails."""
    width, rise, run = _u(rng, 0.7, 1.3), _u(rng, 0.15, 0.2), _u(rng, 0.24, 0.32)
    n = int(rng.integers(5, 10))
    style = rng.choice(["solid", "solid", "open", "spiral"])
    parts: list[Mesh] = []
    if style == "spiral":
        n = max(n, 7)
        outer, pole_r = _u(rng, 0.6, 1.0), _u(rng, 0.04, 0.1)
        step = _u(rng, 0.3, 0.5)
        phase = _u(rng, 0, 2 * np.pi)
        parts.append(P.cylinder(pole_r, n * rise + _u(rng, 0.0, 0.9), 16))
        tops = []
        for k in range(n):
            a0, a1 = phase + k * step, phase + (k + 1) * step * 1.05
            poly = [
                (pole_r * 0.5 * np.cos(a0), pole_r * 0.5 * np.sin(a0)), (outer * np.cos(a0), outer * np.sin(a0)),
                (outer * np.cos(a1), outer * np.sin(a1)), (pole_r * 0.5 * np.cos(a1), pole_r * 0.5 * np.sin(a1)),
            ]
            z = (k + 1) * rise
            parts.append(P.prism(poly, z - 0.04, z))
            tops.append((outer * 0.95 * np.cos(a0 + step / 2), outer * 0.95 * np.sin(a0 + step / 2), z))
        if _chance(rng, 0.7):  # balusters and a helical hand rail
            rail = [np.array(p) + (0, 0, 0.9) for p in tops]
            parts += [P.cylinder(0.01, 0.9, 6, base=p) for p in tops]
            parts += [P.cylinder_between(a, b, 0.02, 8) for a, b in zip(rail[:-1], rail[1:])]
        return parts
    length = n * run
    y0 = -length / 2
    if style == "solid":
        nosing = _u(rng, 0.0, 0.03)
        for k in range(n):
            a = y0 + k * run
            parts.append(P.box([-width / 2, a, 0], [width / 2, a + run, (k + 1) * rise]))
            if nosing > 0.005:
                parts.append(P.box(
                    [-width / 2, a - nosing, (k + 1) * rise - 0.03], [width / 2, a + 0.05, (k + 1) * rise],
                ))
        if _chance(rng, 0.25):  # top landing
            parts.append(P.box(
                [-width / 2, y0 + length - 0.01, 0], [width / 2, y0 + length + _u(rng, 0.6, 1.2), n * rise],
            ))
    else:  # open treads on two sloped stringers
        tread_t = _u(rng, 0.03, 0.06)
        stringer_w, stringer_h = _u(rng, 0.04, 0.07), _u(rng, 0.2, 0.3)
        risers = _chance(rng, 0.3)
        for k in range(n):
            a, z = y0 + k * run, (k + 1) * rise
            parts.append(P.box([-width / 2, a - 0.02, z - tread_t], [width / 2, a + run, z]))
            if risers:
                parts.append(P.box([-width / 2, a + run - 0.02, z - rise], [width / 2, a + run, z - tread_t + 0.001]))
        for sx in (-1, 1):
            x = sx * (width / 2 + stringer_w / 2)
            parts.append(P.beam((x, y0, 0.0), (x, y0 + length, n * rise), stringer_w, stringer_h))
    if _chance(rng, 0.6):  # hand rails on one or both sides
        sides = (-1, 1) if _chance(rng, 0.5) else (int(rng.choice([-1, 1])),)
        rail_h = _u(rng, 0.85, 1.0)
        balusters = _chance(rng, 0.5)
        for sx in sides:
            x = sx * (width / 2 - 0.04)
            bottom = np.array([x, y0 + run / 2, rise])
            top = np.array([x, y0 + length - run / 2, n * rise])
            for p in (bottom, top):
                parts.append(P.box([x - 0.03, p[1] - 0.03, p[2] - 0.01], [x + 0.03, p[1] + 0.03, p[2] + rail_h + 0.05]))
            parts.append(P.cylinder_between(bottom + (0, 0, rail_h), top + (0, 0, rail_h), 0.025, 10))
            if balusters:
                for k in range(1, n - 1):
                    z = (k + 1) * rise
                    yk = y0 + (k + 0.5) * run
                    parts.append(P.cylinder(0.01, rail_h + 0.01, 6, base=(x, yk, z - 0.01)))
    return parts


def _mantel(rng: np.random.Generator) -> list[Mesh]:
    """Fireplace surround: pilasters or columns, frieze, shelf; optional hearth, firebox, logs, mirror."""
    width, depth, height = _u(rng, 1.1, 1.9), _u(rng, 0.2, 0.45), _u(rng, 0.95, 1.3)
    open_w, open_h = width * _u(rng, 0.45, 0.65), height * _u(rng, 0.55, 0.8)
    shelf_t = _u(rng, 0.04, 0.09)
    parts: list[Mesh] = []
    columns = _chance(rng, 0.35)
    for sx in (-1, 1):
        x0, x1 = sorted((sx * width / 2, sx * open_w / 2))
        if columns:
            xc, cw = (x0 + x1) / 2, x1 - x0
            r = min(cw, depth) * 0.35
            parts += [
                P.box([x0, -depth / 2, 0], [x1, depth / 2, 0.12]),
                P.cylinder(r, open_h - 0.2, 16, base=(xc, -depth / 2 + r + 0.02, 0.12)),
                P.box([x0, -depth / 2, open_h - 0.1], [x1, depth / 2, open_h + 0.001]),
                P.box([x0 + 0.02, 0.0, 0.1], [x1 - 0.02, depth / 2, open_h - 0.08]),
            ]
        else:
            parts.append(P.box([x0, -depth / 2, 0], [x1, depth / 2, open_h + 0.001]))
    parts.append(P.box([-width / 2, -depth / 2, open_h], [width / 2, depth / 2, height - shelf_t + 0.001]))
    over_x, over_y = _u(rng, 0.0, 0.1), _u(rng, 0.02, 0.1)
    parts.append(P.box(
        [-width / 2 - over_x, -depth / 2 - over_y, height - shelf_t], [width / 2 + over_x, depth / 2, height],
    ))
    if _chance(rng, 0.7):  # firebox back wall
        parts.append(P.box([-open_w / 2 - 0.001, depth / 2 - 0.04, 0], [open_w / 2 + 0.001, depth / 2, open_h + 0.001]))
    if _chance(rng, 0.6):  # hearth slab on the floor
        e, hd = _u(rng, 0.0, 0.15), _u(rng, 0.25, 0.5)
        parts.append(P.box([-width / 2 - e, -depth / 2 - hd, 0], [width / 2 + e, depth / 2, _u(rng, 0.02, 0.1)]))
    if _chance(rng, 0.3):  # logs in the firebox
        for k in range(int(rng.integers(1, 4))):
            y, z = _u(rng, -depth / 4, depth / 4), 0.05 + 0.06 * k
            parts.append(P.cylinder_between((-open_w * 0.3, y, z), (open_w * 0.3, y, z), 0.04, 10))
    if _chance(rng, 0.2):  # over-mantel mirror or panel
        mw, mh = width * _u(rng, 0.5, 0.9), _u(rng, 0.25, 0.5)
        parts.append(P.box([-mw / 2, depth / 2 - 0.04, height], [mw / 2, depth / 2, height + mh]))
    if _chance(rng, 0.35):  # ornaments on the shelf
        for x in rng.uniform(-width * 0.4, width * 0.4, size=int(rng.integers(1, 4))):
            if _chance(rng, 0.5):
                parts.append(P.cylinder(0.03, _u(rng, 0.1, 0.3), 10, base=(x, 0, height)))
            else:
                parts.append(P.box([x - 0.08, -0.05, height], [x + 0.08, 0.05, height + _u(rng, 0.12, 0.25)]))
    return parts


def _range_hood(rng: np.random.Generator) -> list[Mesh]:
    """Kitchen hood: chimney pyramid, slim under-cabinet wedge, round island hood or wooden canopy."""
    w, d = _u(rng, 0.6, 1.2), _u(rng, 0.45, 0.6)
    style = rng.choice(["chimney", "chimney", "slim", "island", "canopy"])
    parts: list[Mesh] = []
    if style == "slim":  # under-cabinet hood with a sloped front, and the cabinet above it
        h = _u(rng, 0.1, 0.2)
        parts.append(_tapered_box((-w / 2, -d / 2, w / 2, d / 2), (-w / 2, -d / 2 + h * 0.6, w / 2, d / 2), 0.0, h))
        parts.append(P.box([-w / 2, -d / 2 + _u(rng, 0.0, 0.12), h - 0.001], [w / 2, d / 2, h + _u(rng, 0.3, 0.6)]))
        if _chance(rng, 0.5):  # light strip under the front edge
            parts.append(P.box([-w * 0.3, -d / 2 + 0.03, -0.01], [w * 0.3, -d / 2 + 0.08, 0.001]))
    elif style == "island":
        r = _u(rng, 0.25, 0.45)
        visor = _u(rng, 0.03, 0.08)
        parts.append(P.cylinder(r, visor, 28))
        cone_h = _u(rng, 0.15, 0.35)
        duct = _u(rng, 0.08, 0.15)
        parts.append(P.frustum(r * 0.98, duct * 1.1, cone_h, 28, base=(0, 0, visor - 0.001)))
        parts.append(P.cylinder(duct, _u(rng, 0.2, 0.6), 20, base=(0, 0, visor + cone_h - 0.01)))
    else:
        visor = _u(rng, 0.03, 0.1)
        parts.append(P.box([-w / 2, -d / 2, 0], [w / 2, d / 2, visor]))
        cw, cd = _u(rng, 0.22, 0.32), _u(rng, 0.2, 0.28)
        hood_h = _u(rng, 0.15, 0.4)
        top_y0 = d / 2 - cd - (0.0 if style == "chimney" else _u(rng, 0.0, 0.1))
        if style == "canopy":  # wide, tall wooden canopy with a crown
            cw, hood_h = w * _u(rng, 0.5, 0.8), hood_h + 0.2
        parts.append(_tapered_box(
            (-w / 2 + 0.005, -d / 2 + 0.005, w / 2 - 0.005, d / 2 - 0.005),
            (-cw / 2, top_y0, cw / 2, top_y0 + cd), visor - 0.001, visor + hood_h,
        ))
        top = visor + hood_h
        if style == "chimney":
            duct_top = top + _u(rng, 0.2, 0.6)
            x_in, y_in = cw / 2 - 0.01, (top_y0 + 0.01, top_y0 + cd - 0.01)
            parts.append(P.box([-x_in, y_in[0], top - 0.01], [x_in, y_in[1], duct_top]))
        else:
            parts.append(P.box(
                [-cw / 2 - 0.04, top_y0 - 0.04, top - 0.001], [cw / 2 + 0.04, top_y0 + cd + 0.04, top + 0.06],
            ))
        if _chance(rng, 0.6):  # control buttons on the visor front
            for x in np.linspace(-0.08, 0.08, int(rng.integers(2, 5))):
                parts.append(P.cylinder_between(
                    (x, -d / 2 + 0.001, visor / 2), (x, -d / 2 - 0.008, visor / 2), 0.008, 8,
                ))
    return parts


def _glass_box(rng: np.random.Generator) -> list[Mesh]:
    """Glass case: showcase with shelves, aquarium (optional stand) or vitrine on a plinth."""
    w, d, h = _u(rng, 0.35, 1.0), _u(rng, 0.25, 0.6), _u(rng, 0.25, 0.8)
    kind = rng.choice(["showcase", "aquarium", "vitrine"])
    z0 = 0.0
    parts: list[Mesh] = []
    if kind == "aquarium" and _chance(rng, 0.4):  # low cabinet stand
        z0 = _u(rng, 0.2, 0.4)
        parts.append(P.box([-w / 2, -d / 2, 0], [w / 2, d / 2, z0]))
        h = min(h, 0.5)
    elif kind == "vitrine":  # glass cube on a plinth
        z0 = _u(rng, 0.1, 0.4)
        w = d = _u(rng, 0.3, 0.5)
        h = _u(rng, 0.25, 0.5)
        parts.append(P.box([-w / 2 + 0.02, -d / 2 + 0.02, 0], [w / 2 - 0.02, d / 2 - 0.02, z0 + 0.001]))
    elif _chance(rng, 0.3):  # showcase on short legs
        z0 = _u(rng, 0.08, 0.2)
        parts += [_post(False, sx * (w / 2 - 0.02), sy * (d / 2 - 0.02), 0.0, z0 + 0.001, 0.04)
                  for sx in (-1, 1) for sy in (-1, 1)]
    g = _u(rng, 0.005, 0.012)
    x, y, z1 = w / 2, d / 2, z0 + h
    parts += [
        P.box([-x, -y, z0], [x, y, z0 + _u(rng, 0.02, 0.06)]),  # floor plate
        P.box([-x, -y, z0], [-x + g, y, z1]), P.box([x - g, -y, z0], [x, y, z1]),
        P.box([-x + g, -y, z0], [x - g, -y + g, z1]), P.box([-x + g, y - g, z0], [x - g, y, z1]),
    ]
    if kind != "aquarium" or _chance(rng, 0.5):
        parts.append(P.box([-x, -y, z1 - g], [x, y, z1]))  # glass top or lid
    if _chance(rng, 0.6):  # metal frame on the 12 edges
        f = _u(rng, 0.01, 0.025)
        for sx in (-1, 1):
            for sy in (-1, 1):
                parts.append(P.box([sx * x - f / 2, sy * y - f / 2, z0], [sx * x + f / 2, sy * y + f / 2, z1]))
        for zz in (z0, z1):
            for sy in (-1, 1):
                parts.append(P.box([-x, sy * y - f / 2, zz - f / 2], [x, sy * y + f / 2, zz + f / 2]))
            for sx in (-1, 1):
                parts.append(P.box([sx * x - f / 2, -y, zz - f / 2], [sx * x + f / 2, y, zz + f / 2]))
    if kind == "showcase":
        for zz in np.linspace(z0, z1, int(rng.integers(2, 5)) + 1)[1:-1]:
            parts.append(P.box([-x + g, -y + g, zz], [x - g, y - g, zz + g]))
    elif kind == "aquarium":
        parts.append(P.box([-x + g, -y + g, z0 + 0.02], [x - g, y - g, z0 + 0.06]))  # gravel
        for _ in range(int(rng.integers(0, 4))):
            r = _u(rng, 0.03, 0.08)
            parts.append(P.ellipsoid(
                (r, r * 0.8, r * 0.6), 10, 5, center=(_u(rng, -x + r, x - r), _u(rng, -y / 2, y / 2), z0 + 0.06),
            ))
    else:  # an exhibit inside
        parts.append(P.sphere(_u(rng, 0.06, min(w, h) * 0.35), 12, 6, center=(0, 0, z0 + h * 0.45)))
    return parts


# ------------------------------------------------------------------ instruments and electronics


def _keys(x0: float, x1: float, y0: float, y1: float, z: float, rows: int, key_h: float,
          space: bool) -> list[Mesh]:
    """A grid of key caps on the rectangle [x0, x1] x [y0, y1] at height z (front row y0)."""
    pitch = (y1 - y0) / rows
    cols = max(3, int(round((x1 - x0) / pitch)))
    dx = (x1 - x0) / cols
    parts = []
    for r in range(rows):
        ya, yb = y0 + r * pitch + pitch * 0.1, y0 + (r + 1) * pitch - pitch * 0.1
        if space and r == 0 and cols >= 8:
            a, b = cols // 2 - cols // 4, cols // 2 + cols // 4
            spans = [(c, c + 1) for c in range(a)] + [(a, b)] + [(c, c + 1) for c in range(b, cols)]
        else:
            spans = [(c, c + 1) for c in range(cols)]
        for c0, c1 in spans:
            parts.append(P.box([x0 + c0 * dx + dx * 0.1, ya, z], [x0 + c1 * dx - dx * 0.1, yb, z + key_h]))
    return parts


def _keyboard(rng: np.random.Generator) -> list[Mesh]:
    """Computer keyboard: key grid with space bar, optional number pad, function row, wrist rest, tilt."""
    w, d, t = _u(rng, 0.28, 0.48), _u(rng, 0.11, 0.19), _u(rng, 0.015, 0.035)
    rest = _u(rng, 0.05, 0.08) if _chance(rng, 0.3) else 0.0
    y0 = -d / 2
    parts = [P.box([-w / 2, y0 - rest, 0], [w / 2, d / 2, t])]
    margin = _u(rng, 0.008, 0.02)
    key_h = _u(rng, 0.004, 0.012)
    main_x1 = w / 2 - margin
    if w > 0.4 and _chance(rng, 0.8):  # number pad block on the right
        pad_w = _u(rng, 0.07, 0.09)
        parts += _keys(main_x1 - pad_w, main_x1, y0 + margin, d / 2 - margin - 0.025, t, 5, key_h, False)
        main_x1 -= pad_w + 0.015
    parts += _keys(
        -w / 2 + margin, main_x1, y0 + margin, d / 2 - margin - 0.025, t, int(rng.integers(4, 6)), key_h, True,
    )
    if _chance(rng, 0.7):  # function-key row
        parts += _keys(-w / 2 + margin, main_x1, d / 2 - margin - 0.018, d / 2 - margin, t, 1, key_h, False)
    tilt = _u(rng, 0.0, 0.12)
    if tilt > 0.02:
        parts = [_about(m, (0, y0 - rest, 0), P.rotation_x(tilt)) for m in parts]
        lift = (d + rest) * np.sin(tilt)
        y_back = y0 - rest + (d + rest) * np.cos(tilt)
        for sx in (-1, 1):
            x = sx * (w / 2 - 0.04)
            parts.append(P.box([x - 0.02, y_back - 0.03, -0.001], [x + 0.02, y_back - 0.005, lift]))
    return parts


def _laptop(rng: np.random.Generator) -> list[Mesh]:
    """Open laptop: base with keys or a flat deck, touch pad, lid at 95-135 degrees."""
    w = _u(rng, 0.28, 0.42)
    d = w * _u(rng, 0.62, 0.75)
    t, lid_t = _u(rng, 0.012, 0.03), _u(rng, 0.005, 0.012)
    parts = [P.box([-w / 2, -d / 2, 0], [w / 2, d / 2, t])]
    if _chance(rng, 0.6):
        parts += _keys(
            -w / 2 + 0.02, w / 2 - 0.02, -d / 2 + d * 0.45, d / 2 - 0.015, t, int(rng.integers(5, 7)), 0.002, True,
        )
    else:
        parts.append(P.box([-w / 2 + 0.02, -d / 2 + d * 0.45, t], [w / 2 - 0.02, d / 2 - 0.015, t + 0.002]))
    pad = _u(rng, 0.08, 0.12)
    parts.append(P.box([-pad / 2, -d / 2 + 0.015, t], [pad / 2, -d / 2 + d * 0.4, t + 0.001]))
    opening = _u(rng, np.radians(95), np.radians(135))
    lid = P.box([-w / 2, 0.0, 0.0], [w / 2, lid_t, d])
    if _chance(rng, 0.5):  # screen bezel inset on the inner face
        lid = P.merge([lid, P.box([-w / 2 + 0.015, -0.002, 0.015], [w / 2 - 0.015, 0.0005, d - 0.02])])
    parts.append(P.transform(lid, P.rotation_x(-(opening - np.pi / 2)), translation=(0, d / 2 - lid_t, t)))
    if _chance(rng, 0.5):  # hinge barrel
        parts.append(P.cylinder_between(
            (-w * 0.35, d / 2 - lid_t / 2, t), (w * 0.35, d / 2 - lid_t / 2, t), lid_t * 0.7, 8,
        ))
    return parts


def _radio(rng: np.random.Generator) -> list[Mesh]:
    """Boombox, table radio (optionally arched) or portable: speakers, dial, knobs, handle, antenna."""
    style = rng.choice(["boombox", "table", "portable"])
    if style == "boombox":
        w, d, h = _u(rng, 0.35, 0.6), _u(rng, 0.1, 0.16), _u(rng, 0.14, 0.24)
    elif style == "table":
        w, d, h = _u(rng, 0.25, 0.45), _u(rng, 0.12, 0.2), _u(rng, 0.15, 0.25)
    else:
        w, d, h = _u(rng, 0.15, 0.25), _u(rng, 0.05, 0.09), _u(rng, 0.09, 0.16)
    feet = _u(rng, 0.008, 0.02) if _chance(rng, 0.5) else 0.0
    parts = [P.box([-w / 2, -d / 2, feet], [w / 2, d / 2, feet + h])]
    if feet:
        parts += [_post(True, sx * (w / 2 - 0.03), sy * (d / 2 - 0.02), 0.0, feet + 0.001, 0.02)
                  for sx in (-1, 1) for sy in (-1, 1)]
    top = feet + h
    y = -d / 2
    if style == "table" and _chance(rng, 0.6):  # arched top
        arch = P.cylinder_between((0, -d / 2, 0), (0, d / 2, 0), 1.0, 24)
        parts.append(P.transform(arch, scale=(w / 2, 1.0, _u(rng, 0.04, 0.1)), translation=(0, 0, top - 0.001)))
    speakers = 2 if style == "boombox" else int(rng.integers(1, 3))
    r = min(h * 0.35, w / (2 * speakers + 1))
    for k in range(speakers):
        xc = -w / 2 + w * (k + 1) / (speakers + 1) if speakers > 1 else -w / 4
        parts.append(P.cylinder_between((xc, y + 0.001, feet + h * 0.45), (xc, y - 0.008, feet + h * 0.45), r, 16))
    parts.append(P.box([w * 0.05, y - 0.004, top - h * 0.3], [w * 0.45, y + 0.001, top - h * 0.12]))  # dial window
    for k in range(int(rng.integers(1, 4))):  # knobs
        xk = w * 0.1 + k * min(0.035, w * 0.12)
        parts.append(P.cylinder_between((xk, y + 0.001, feet + h * 0.25), (xk, y - 0.015, feet + h * 0.25), 0.012, 10))
    if style != "table" and _chance(rng, 0.7):  # carry handle
        hh = _u(rng, 0.03, 0.06)
        for sx in (-1, 1):
            parts.append(P.box([sx * w * 0.3 - 0.01, -0.01, top - 0.001], [sx * w * 0.3 + 0.01, 0.01, top + hh]))
        parts.append(P.box([-w * 0.3 - 0.01, -0.012, top + hh - 0.015], [w * 0.3 + 0.01, 0.012, top + hh]))
    if _chance(rng, 0.4):  # telescopic antenna
        base = np.array([w / 2 - 0.02, d / 4, top])
        a = _u(rng, 0.6, 1.3)
        length = _u(rng, 0.1, 0.3)
        parts.append(P.cylinder_between(base, base + length * np.array([np.sin(a), 0.0, np.cos(a)]), 0.004, 6))
    return parts


def _piano_keys(x0: float, x1: float, y_front: float, z: float, rng) -> list[Mesh]:
    """White key slab (x0..x1, 0.15 m deep from y_front) and the black keys on it."""
    key_depth = _u(rng, 0.14, 0.16)
    parts = [P.box([x0, y_front, z], [x1, y_front + key_depth, z + 0.02])]
    n_white = max(14, int(round((x1 - x0) / 0.0235)))
    kw = (x1 - x0) / n_white
    for i in range(n_white - 1):
        if i % 7 in (2, 6):  # no black key between E-F and B-C
            continue
        xc = x0 + (i + 1) * kw
        parts.append(P.box(
            [xc - kw * 0.28, y_front + key_depth * 0.35, z + 0.019], [xc + kw * 0.28, y_front + key_depth, z + 0.032],
        ))
    return parts


def _piano(rng: np.random.Generator) -> list[Mesh]:
    """Upright, grand (curved case, lid closed or propped) or digital piano with keys."""
    kind = rng.choice(["upright", "upright", "grand", "digital"])
    key_z = _u(rng, 0.68, 0.75)
    parts: list[Mesh] = []
    if kind == "upright":
        w, h = _u(rng, 1.4, 1.6), _u(rng, 1.05, 1.35)
        case_d, depth = _u(rng, 0.25, 0.35), _u(rng, 0.55, 0.65)
        back_y = depth / 2
        parts.append(P.box([-w / 2, back_y - case_d, 0], [w / 2, back_y, h]))
        parts.append(P.box(
            [-w / 2 + 0.05, -depth / 2 + 0.05, key_z - 0.06], [w / 2 - 0.05, back_y - case_d + 0.001, key_z],
        ))
        for sx in (-1, 1):  # cheeks
            x0, x1 = sorted((sx * w / 2, sx * (w / 2 - 0.05)))
            parts.append(P.box([x0, -depth / 2, key_z - 0.08], [x1, back_y - case_d + 0.001, key_z + 0.1]))
            if _chance(rng, 0.7):  # front legs / toe blocks
                parts.append(P.box([x0, -depth / 2 + 0.02, 0], [x1, -depth / 2 + 0.08, key_z - 0.079]))
        parts += _piano_keys(-w / 2 + 0.05, w / 2 - 0.05, -depth / 2 + 0.05, key_z, rng)
        if _chance(rng, 0.5):  # music desk leaning on the case
            desk = P.box([-w * 0.3, 0, 0], [w * 0.3, 0.015, 0.25])
            parts.append(P.transform(desk, P.rotation_x(-0.2), translation=(0, back_y - case_d - 0.03, key_z + 0.12)))
        for k in range(int(rng.choice([2, 3]))):  # pedals
            x = (k - 1) * 0.06
            parts.append(P.box([x - 0.015, back_y - case_d - 0.12, 0.05], [x + 0.015, back_y - case_d + 0.001, 0.065]))
        return parts
    if kind == "digital":
        w = _u(rng, 1.2, 1.4)
        body_d, body_h = _u(rng, 0.28, 0.4), _u(rng, 0.08, 0.15)
        parts.append(P.box([-w / 2, -body_d / 2, key_z - body_h], [w / 2, body_d / 2, key_z]))
        parts += _piano_keys(-w / 2 + 0.07, w / 2 - 0.07, -body_d / 2, key_z, rng)
        panels = _chance(rng, 0.7)
        for sx in (-1, 1):  # side panels or X legs
            x = sx * (w / 2 - 0.06)
            if panels:
                parts.append(P.box([x - 0.02, -body_d / 2 + 0.02, 0], [x + 0.02, body_d / 2, key_z - body_h + 0.001]))
            else:
                for sy in (-1, 1):
                    parts.append(P.beam(
                        (x, sy * body_d * 0.6, 0), (x, -sy * body_d * 0.3, key_z - body_h + 0.005), 0.03,
                    ))
        if _chance(rng, 0.5):  # back panel
            parts.append(P.box(
                [-w / 2 + 0.08, body_d / 2 - 0.02, 0.1], [w / 2 - 0.08, body_d / 2, key_z - body_h + 0.001],
            ))
        if _chance(rng, 0.8):  # music rest
            rest = P.box([-w * 0.3, 0.0, 0.0], [w * 0.3, 0.012, _u(rng, 0.15, 0.3)])
            parts.append(P.transform(rest, P.rotation_x(-0.2), translation=(0, body_d / 2 - 0.06, key_z - 0.001)))
        return parts
    # grand: curved case outline, three legs, lid closed or propped open
    w, length = _u(rng, 1.4, 1.55), _u(rng, 1.5, 2.3)
    case_z0, rim = key_z - _u(rng, 0.05, 0.12), _u(rng, 0.25, 0.35)
    y0, y1 = -length / 2, length / 2
    tail = _u(rng, 0.25, 0.4)
    curve = [(-w / 2 + w * (tail + (1 - tail) * (1 - s ** 1.6)), y0 + s * length) for s in np.linspace(0.15, 1.0, 10)]
    outline = [(-w / 2, y0), (w / 2, y0)] + curve + [(-w / 2, y1)]
    parts.append(P.prism(outline, case_z0, case_z0 + rim))
    parts.append(P.box([-w / 2, y0 - 0.2, key_z - 0.06], [w / 2, y0 + 0.001, key_z]))  # key bed
    parts += _piano_keys(-w / 2 + 0.06, w / 2 - 0.06, y0 - 0.2, key_z, rng)
    for sx in (-1, 1):
        x0, x1 = sorted((sx * w / 2, sx * (w / 2 - 0.06)))
        parts.append(P.box([x0, y0 - 0.2, key_z - 0.06], [x1, y0 + 0.001, key_z + 0.08]))
    leg_at = [(-w / 2 + 0.1, y0 - 0.05), (w / 2 - 0.1, y0 - 0.05), (-w / 2 + w * tail * 0.8, y1 - 0.15)]
    round_legs, leg_w = _chance(rng, 0.5), _u(rng, 0.07, 0.12)
    parts += [_post(round_legs, x, y, 0.0, case_z0 + 0.001, leg_w) for x, y in leg_at]
    parts.append(P.box([-0.1, y0 + 0.1, 0.05], [0.1, y0 + 0.16, case_z0 + 0.001]))  # pedal lyre
    parts.append(P.box([-0.12, y0 + 0.02, 0.05], [0.12, y0 + 0.18, 0.08]))
    top = case_z0 + rim
    lid = P.prism(outline, 0.0, 0.02)
    if _chance(rng, 0.5):
        angle = _u(rng, 0.2, 0.45)
        parts.append(_about(P.transform(lid, translation=(0, 0, top)), (-w / 2, 0, top), P.rotation_y(-angle)))
        prop_x = w / 2 - 0.2
        parts.append(P.cylinder_between(
            (prop_x, 0, top), (prop_x, 0, top + (prop_x + w / 2) * np.sin(angle) * 0.95), 0.01, 6,
        ))
    else:
        parts.append(P.transform(lid, translation=(0, 0, top)))
    return parts


# ------------------------------------------------------------------ pots, tents, people


def _pot_profile(r_bottom: float, r_top: float, h: float, wall: float, rim_w: float, rim_h: float):
    """Counter-clockwise (r, z) outline of an open-top pot with an optional rolled rim."""
    outer = [(0.0, 0.0), (r_bottom, 0.0)]
    if rim_h > 0:
        outer += [(r_top, h - rim_h), (r_top + rim_w, h - rim_h), (r_top + rim_w, h)]
    else:
        outer += [(r_top, h)]
    inner_bottom = r_bottom - wall + (r_top - r_bottom) * wall / h
    return outer + [(r_top - wall, h), (max(inner_bottom, wall), wall), (0.0, wall)]


def _flower_pot(rng: np.random.Generator) -> list[Mesh]:
    """Hollow round, square or bowl pot; optional saucer or stand; soil with a shrub, flowers or cactus."""
    shape = rng.choice(["round", "round", "square", "bowl"])
    if shape == "bowl":
        h, r_top = _u(rng, 0.12, 0.2), _u(rng, 0.2, 0.35)
    else:
        h, r_top = _u(rng, 0.2, 0.45), _u(rng, 0.08, 0.25)
    r_bottom = r_top * _u(rng, 0.55, 0.9)
    wall = _u(rng, 0.01, 0.025)
    z0 = 0.0
    parts: list[Mesh] = []
    if _chance(rng, 0.1):  # low tripod plant stand
        z0 = _u(rng, 0.1, 0.25)
        for k in range(3):
            a = 2 * np.pi * k / 3
            parts.append(P.cylinder_between(
                (r_bottom * 1.3 * np.cos(a), r_bottom * 1.3 * np.sin(a), 0.0),
                (r_bottom * 0.8 * np.cos(a), r_bottom * 0.8 * np.sin(a), z0 + 0.002), 0.012, 8,
            ))
        parts.append(P.transform(P.torus(r_bottom * 0.85, 0.012, 20, 6), translation=(0, 0, z0 - 0.01)))
    elif _chance(rng, 0.4):  # saucer
        sr = r_bottom * _u(rng, 1.15, 1.4)
        st = _u(rng, 0.015, 0.04)
        parts.append(P.frustum(sr * 0.85, sr, st, 24))
        z0 = st - 0.002
    if shape == "square":
        bw, tw = 2 * r_bottom, 2 * r_top
        fw = bw + (tw - bw) * wall / h  # floor slab follows the wall slope
        parts.append(_tapered_box(
            (-bw / 2, -bw / 2, bw / 2, bw / 2), (-fw / 2, -fw / 2, fw / 2, fw / 2), z0, z0 + wall,
        ))
        for k in range(4):  # four sloped walls, as tapered slabs rotated about z
            wall_mesh = _tapered_box(
                (-bw / 2, -bw / 2, bw / 2, -bw / 2 + wall), (-tw / 2, -tw / 2, tw / 2, -tw / 2 + wall), z0, z0 + h,
            )
            parts.append(P.transform(wall_mesh, P.rotation_z(k * np.pi / 2)))
        soil_r = r_top * 0.85
        soil = P.box([-soil_r, -soil_r, z0 + h * 0.75], [soil_r, soil_r, z0 + h * 0.85])
    else:
        rim = _chance(rng, 0.6)
        prof = _pot_profile(r_bottom, r_top, h, wall, wall * 1.5 if rim else 0.0, h * _u(rng, 0.1, 0.2) if rim else 0.0)
        parts.append(P.transform(P.revolve(prof, 24), translation=(0, 0, z0)))
        f = _u(rng, 0.75, 0.9)
        soil_r = (r_bottom + (r_top - r_bottom) * f) - wall * 1.5
        soil = P.cylinder(soil_r, 0.02, 20, base=(0, 0, z0 + h * f - 0.02))
    if shape == "bowl" or not _chance(rng, 0.3):  # planted (a bowl always is)
        parts.append(soil)
        top = z0 + h * 0.8
        content = rng.choice(["shrub", "flowers", "cactus"])
        if content == "shrub":
            for _ in range(int(rng.integers(2, 7))):
                r = _u(rng, 0.3, 0.7) * r_top
                c = (_u(rng, -0.4, 0.4) * r_top, _u(rng, -0.4, 0.4) * r_top, top + r * _u(rng, 0.6, 1.6))
                parts.append(P.ellipsoid((r, r, r * _u(rng, 0.7, 1.1)), 10, 5, center=c))
        elif content == "flowers":
            for _ in range(int(rng.integers(3, 10))):
                a, lean = _u(rng, 0, 2 * np.pi), _u(rng, 0.0, 0.5) * r_top
                tip = np.array([lean * np.cos(a), lean * np.sin(a), top + max(h, 0.2) * _u(rng, 0.4, 1.0)])
                parts.append(P.cylinder_between((0, 0, top - 0.01), tip, 0.004, 5))
                parts.append(P.ellipsoid((0.03, 0.03, 0.015), 8, 4, center=tip))
        else:
            ch = max(h, 0.2) * _u(rng, 0.4, 1.0)
            cr = min(_u(rng, 0.03, 0.08), soil_r * 0.8)
            parts.append(P.cylinder(cr, ch, 10, base=(0, 0, top - 0.01)))
            parts.append(P.sphere(cr, 10, 5, center=(0, 0, top + ch - 0.01)))
            if _chance(rng, 0.5):  # an arm
                elbow = (cr + 0.04, 0, top + ch * 0.5)
                parts.append(P.cylinder_between((0, 0, top + ch * 0.4), elbow, cr * 0.6, 8))
                parts.append(P.cylinder(cr * 0.6, ch * 0.3, 8, base=elbow))
    return parts


def _tent(rng: np.random.Generator) -> list[Mesh]:
    """Dome (arched poles, vestibule), ridge (A-frame, door flap) or teepee tent; optional guy lines."""
    style = rng.choice(["dome", "dome", "ridge", "teepee"])
    parts: list[Mesh] = []
    if style == "dome":
        w, length, h = _u(rng, 1.4, 2.4), _u(rng, 1.8, 2.8), _u(rng, 0.9, 1.5)
        phi = np.linspace(0.0, np.pi / 2, 8)
        profile = [(0.0, 0.0)] + [(float(np.cos(p)), float(np.sin(p))) for p in phi[:-1]] + [(0.0, 1.0)]
        dome = P.revolve(profile, 24)
        parts.append(P.transform(dome, scale=(w / 2, length / 2, h)))
        if _chance(rng, 0.5):  # vestibule at the door
            vl = _u(rng, 0.4, 0.8)
            parts.append(P.transform(dome, scale=(w * 0.3, vl, h * 0.75), translation=(0, -length / 2 + vl * 0.3, 0)))
        for sign in (-1, 1):  # two crossing arched poles over the diagonals
            reach = np.array([sign * w / 2, length / 2]) / np.sqrt(2.0)  # diagonal meets the dome's rim
            t = np.linspace(0.0, np.pi, 10)
            pts = [1.03 * np.array([np.cos(a) * reach[0], np.cos(a) * reach[1], np.sin(a) * h]) for a in t]
            parts += [P.cylinder_between(a, b, 0.008, 6) for a, b in zip(pts[:-1], pts[1:])]
        guy_at = [np.array([sx * w * 0.35, sy * length * 0.35, h * 0.6]) for sx in (-1, 1) for sy in (-1, 1)]
    elif style == "ridge":
        w, length, h = _u(rng, 1.2, 2.0), _u(rng, 1.8, 2.6), _u(rng, 0.9, 1.4)
        wall = _u(rng, 0.0, 0.4) if _chance(rng, 0.4) else 0.0
        if wall > 0.05:
            profile = [(-w / 2, 0.0), (w / 2, 0.0), (w / 2, wall), (0.0, h), (-w / 2, wall)]
        else:
            profile = [(-w / 2, 0.0), (w / 2, 0.0), (0.0, h)]
        parts.append(_extrude_xz(profile, -length / 2, length / 2))
        for sy in (-1, 1):  # end poles
            parts.append(P.cylinder(0.012, h + 0.12, 8, base=(0, sy * (length / 2 + 0.02), 0)))
        if _chance(rng, 0.5):  # open door flap
            flap = _extrude_xz([(0.0, 0.0), (w * 0.4, 0.0), (0.0, h * 0.85)], -0.01, 0.0)
            parts.append(P.transform(flap, P.rotation_z(-_u(rng, 0.3, 1.0)), translation=(0, -length / 2, 0)))
        guy_at = [np.array([0, sy * length / 2, h + 0.1]) for sy in (-1, 1)]
    else:  # teepee
        r, h = _u(rng, 0.8, 1.5), _u(rng, 1.3, 2.0)
        n = int(rng.integers(5, 9))
        parts.append(P.frustum(r, 0.0, h, n))
        for k in range(n):
            a = 2 * np.pi * (k + 0.5) / n
            foot = np.array([r * 0.9 * np.cos(a), r * 0.9 * np.sin(a), 0.0])
            parts.append(P.cylinder_between(foot, foot * -0.15 + (0, 0, h * 1.15), 0.02, 6))
        guy_at = []
    if guy_at and _chance(rng, 0.5):  # guy lines and pegs
        for p in guy_at:
            out = np.array([p[0], p[1], 0.0])
            norm = np.linalg.norm(out[:2])
            peg = out + np.r_[out[:2] / max(norm, 1e-9), 0.0] * _u(rng, 0.5, 0.9)
            parts.append(P.cylinder_between(p, peg + (0, 0, 0.08), 0.003, 5))
            parts.append(P.cylinder(0.008, 0.1, 6, base=peg))
    return parts


def _person(rng: np.random.Generator) -> list[Mesh]:
    """A posed figure (standing, walking, waving or seated) of capsule-like limbs."""
    height = _u(rng, 1.5, 1.95)
    build = _u(rng, 0.85, 1.2)
    hip_z, shoulder_z = 0.53 * height, 0.81 * height
    hip_x, shoulder_x = 0.085 * height * build, 0.12 * height * build
    thigh, shin = 0.245 * height, 0.245 * height
    upper_arm, forearm = 0.17 * height, 0.15 * height
    limb_r = 0.032 * height * build
    pose = rng.choice(["standing", "standing", "standing", "walking", "walking", "waving", "waving", "seated"])
    stride = _u(rng, 0.2, 0.5)
    parts: list[Mesh] = []
    for side in (-1, 1):
        if pose == "walking":
            swing, knee = (stride, 0.1) if side < 0 else (-stride * 0.7, _u(rng, 0.1, 0.5))
        elif pose == "seated":
            swing, knee = _u(rng, 1.3, 1.7), _u(rng, 1.3, 1.7)
        else:
            swing, knee = _u(rng, -0.05, 0.1), _u(rng, 0.0, 0.1)
        spread = _u(rng, 0.0, 0.12)
        hip = np.array([side * hip_x, 0.0, hip_z])
        knee_p = hip + thigh * np.array([side * np.sin(spread), -np.sin(swing), -np.cos(swing)])
        shin_a = swing - knee
        ankle = knee_p + shin * np.array([side * np.sin(spread) * 0.5, -np.sin(shin_a), -np.cos(shin_a)])
        parts += [
            _limb(hip, knee_p, limb_r * 1.6, limb_r * 1.1), _limb(knee_p, ankle, limb_r * 1.1, limb_r * 0.8),
            P.sphere(limb_r * 1.1, 8, 4, center=knee_p),
            P.ellipsoid((limb_r * 1.1, 0.065 * height, limb_r * 0.9), 10, 4,
                        center=ankle + (0, -0.035 * height, -limb_r * 0.5)),
        ]
        shoulder = np.array([side * shoulder_x, 0.0, shoulder_z])
        if pose == "waving" and side > 0:
            raise_, abduct, bend = _u(rng, 2.2, 2.9), _u(rng, 0.1, 0.5), _u(rng, -0.6, 0.0)
        elif pose == "walking":
            raise_, abduct, bend = (-0.3 * side * stride * 2), _u(rng, 0.05, 0.2), _u(rng, 0.1, 0.6)
        else:
            raise_, abduct, bend = _u(rng, -0.2, 0.5), _u(rng, 0.05, 0.4), _u(rng, 0.0, 1.4)
        elbow = shoulder + upper_arm * np.array([
            side * np.sin(abduct), -np.sin(raise_) * np.cos(abduct), -np.cos(raise_) * np.cos(abduct)
        ])
        fore = raise_ + bend
        wrist = elbow + forearm * np.array([
            side * np.sin(abduct) * 0.6, -np.sin(fore) * np.cos(abduct), -np.cos(fore) * np.cos(abduct)
        ])
        hand_dir = (wrist - elbow) / forearm
        parts += [
            P.sphere(limb_r * 1.2, 8, 4, center=shoulder),
            _limb(shoulder, elbow, limb_r, limb_r * 0.85), _limb(elbow, wrist, limb_r * 0.85, limb_r * 0.65),
            P.sphere(limb_r * 0.85, 8, 4, center=elbow),
            P.sphere(limb_r * 1.0, 8, 4, center=wrist + hand_dir * limb_r * 1.2),
        ]
    torso_h = shoulder_z - hip_z + 0.06 * height
    parts.append(P.superellipsoid(
        (2 * shoulder_x + limb_r, 0.13 * height * build, torso_h), _u(rng, 0.4, 0.8), 12, 6,
        center=(0, 0, hip_z - 0.02 * height + torso_h / 2),
    ))
    parts.append(P.ellipsoid((hip_x + limb_r * 1.6, 0.07 * height * build, 0.06 * height), 12, 6, center=(0, 0, hip_z)))
    neck_top = 0.87 * height
    parts.append(P.cylinder(
        0.025 * height, neck_top - shoulder_z + 0.02 * height, 10, base=(0, 0, shoulder_z - 0.02 * height),
    ))
    head_c = np.array([0.0, -0.005 * height, 0.93 * height])
    parts.append(P.ellipsoid((0.05 * height, 0.06 * height, 0.068 * height), 12, 6, center=head_c))
    extra = rng.choice(["none", "none", "hat", "hair", "skirt", "backpack"])
    if extra == "hat":
        brim_z = head_c[2] + 0.035 * height
        parts.append(P.cylinder(0.085 * height, 0.006 * height, 16, base=(0, 0, brim_z)))
        parts.append(P.cylinder(0.05 * height, 0.06 * height, 16, base=(0, 0, brim_z)))
    elif extra == "hair":
        parts.append(P.ellipsoid((0.055 * height, 0.05 * height, 0.09 * height), 12, 6,
                                 center=head_c + (0, 0.02 * height, -0.01 * height)))
    elif extra == "skirt" and pose != "seated":
        parts.append(P.frustum(hip_x + limb_r * 3.5 + 0.03, hip_x + limb_r * 1.8, 0.2 * height, 16,
                               base=(0, 0, hip_z - 0.18 * height)))
    elif extra == "backpack":
        parts.append(P.superellipsoid((0.2 * height * build, 0.09 * height, 0.24 * height), 0.4, 12, 6,
                                      center=(0, 0.065 * height * build + 0.04 * height, shoulder_z - 0.14 * height)))
    return parts


NEGATIVE_BUILDERS: dict[str, Callable[[np.random.Generator], list[Mesh]]] = {
    "dresser": _dresser, "tv_stand": _tv_stand, "bench": _bench, "stool": _stool,
    "stairs": _stairs, "mantel": _mantel, "range_hood": _range_hood, "glass_box": _glass_box,
    "piano": _piano, "keyboard": _keyboard, "laptop": _laptop, "radio": _radio,
    "flower_pot": _flower_pot, "tent": _tent, "person": _person,
}
"""Builders of the extra negative classes, in a fixed order (ModelNet40 folder names)."""
