"""Real-style indoor rooms: walls with doors and windows, furnished and cluttered.

The style is deliberately different from :mod:`cad2scan.synth.cad_shapes`: rounded and
upholstered furniture (superellipsoid cushions, mattresses, blankets, pillows), other
proportions, objects on every surface (monitors, books, cups, laptops), clutter on the
floor (boxes, bags, bins), furniture pushed against walls and grouped (chairs around
tables, a bed against a wall, toilet + sink + bathtub in bathrooms).

A room is a list of (mesh, NYU40 label) parts in metres, z up, floor top at z = 0,
interior spanning [0, size_x] x [0, size_y]. One part is one object instance (or one
wall); the scanner (:mod:`cad2scan.synth.scanner`) turns it into a point cloud.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from cad2scan.errors import ConfigError
from cad2scan.geometry.mesh import Mesh
from cad2scan.synth import primitives as P

# NYU40 label ids used in the rooms.
WALL, FLOOR, CABINET, BED, CHAIR, SOFA, TABLE, DOOR, WINDOW = 1, 2, 3, 4, 5, 6, 7, 8, 9
BOOKSHELF, PICTURE, DESK, CURTAIN, PILLOW = 10, 11, 14, 16, 18
BOX, TOILET, SINK, LAMP, BATHTUB, BAG, OTHERFURNITURE, OTHERPROP = 29, 33, 34, 35, 36, 37, 39, 40

ROOM_TYPES = ("office", "living_room", "bedroom", "bathroom", "conference_room", "kitchen")
# Labels of objects that always stand on the floor (their lowest point is at z = 0).
FLOOR_STANDING_LABELS = (BED, CHAIR, SOFA, TABLE, BOOKSHELF, DESK, TOILET, BATHTUB)

WALL_THICKNESS = 0.12


@dataclass
class Room:
    """A furnished room.

    parts:     list of (Mesh in metres, NYU40 label id); one entry per object or wall.
    room_type: one of ROOM_TYPES.
    size:      (size_x, size_y, wall_height) of the interior, metres; the interior spans
               [0, size_x] x [0, size_y] and the floor top is z = 0.
    """

    parts: list[tuple[Mesh, int]]
    room_type: str
    size: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def labels(self) -> set[int]:
        return {label for _, label in self.parts}


# ------------------------------------------------------------------ small helpers


def _u(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi))


def _chance(rng: np.random.Generator, p: float) -> bool:
    return bool(rng.random() < p)


@dataclass
class _Item:
    """An object (or group) in its own frame: centred footprint, front towards -y, z >= 0."""

    parts: list[tuple[Mesh, int]] = field(default_factory=list)

    def add(self, label: int, meshes: list[Mesh]) -> "_Item":
        if meshes:
            self.parts.append((Mesh.concatenate(meshes), label))
        return self

    def extend(self, other: "_Item", x: float = 0.0, y: float = 0.0, z: float = 0.0, theta: float = 0.0) -> "_Item":
        rot = P.rotation_z(theta)
        for mesh, label in other.parts:
            self.parts.append((P.transform(mesh, rot, translation=(x, y, z)), label))
        return self

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lows, highs = zip(*(m.bounds() for m, _ in self.parts))
        return np.min(lows, axis=0), np.max(highs, axis=0)

    def centred(self) -> "_Item":
        lo, hi = self.bounds()
        out = _Item()
        return out.extend(self, -(lo[0] + hi[0]) / 2, -(lo[1] + hi[1]) / 2, 0.0)

    @property
    def size(self) -> np.ndarray:
        lo, hi = self.bounds()
        return hi - lo


def _facing(direction) -> float:
    """Angle about z that turns an item's front (-y) towards ``direction`` (2,)."""
    return float(np.arctan2(direction[0], -direction[1]))


# ------------------------------------------------------------------ small objects (otherprop...)


def _cup(rng) -> Mesh:
    r, h = _u(rng, 0.035, 0.05), _u(rng, 0.08, 0.12)
    return P.revolve([(r * 0.8, 0.0), (r, h), (r - 0.005, h), (r * 0.8 - 0.005, 0.008)], 12)


def _bottle(rng) -> Mesh:
    r, h = _u(rng, 0.03, 0.045), _u(rng, 0.2, 0.3)
    return P.revolve([(r, 0.0), (r, h * 0.65), (0.012, h * 0.85), (0.012, h)], 12)


def _book_stack(rng) -> list[Mesh]:
    out, z = [], 0.0
    for _ in range(int(rng.integers(1, 5))):
        w, d, t = _u(rng, 0.15, 0.3), _u(rng, 0.2, 0.3), _u(rng, 0.015, 0.05)
        out.append(P.box_centered((w, d, t), (0, 0, z + t / 2), _u(rng, -0.3, 0.3)))
        z += t
    return out


def _laptop(rng) -> list[Mesh]:
    w, d = _u(rng, 0.3, 0.38), _u(rng, 0.22, 0.26)
    base = P.box([-w / 2, -d / 2, 0], [w / 2, d / 2, 0.018])
    screen = P.box([-w / 2, 0, 0], [w / 2, 0.008, d])
    screen = P.transform(screen, P.rotation_x(-_u(rng, 0.15, 0.45)), translation=(0, d / 2 - 0.01, 0.012))
    return [base, screen]


def _small_object(rng) -> list[Mesh]:
    kind = rng.choice(["cup", "bottle", "books", "laptop", "box", "papers", "bowl"])
    if kind == "cup":
        return [_cup(rng)]
    if kind == "bottle":
        return [_bottle(rng)]
    if kind == "books":
        return _book_stack(rng)
    if kind == "laptop":
        return _laptop(rng)
    if kind == "papers":
        return [P.box_centered((0.21, 0.3, _u(rng, 0.005, 0.03)), (0, 0, 0.01), _u(rng, -0.5, 0.5))]
    if kind == "bowl":
        r = _u(rng, 0.07, 0.12)
        return [P.revolve([(r * 0.5, 0.0), (r, r * 0.6), (r - 0.008, r * 0.6), (r * 0.5 - 0.008, 0.008)], 14)]
    s = rng.uniform(0.08, 0.25, size=3)
    return [P.box_centered(s, (0, 0, s[2] / 2), _u(rng, 0, np.pi))]


def _scatter_on(item: _Item, rect, z: float, rng, count: int, label: int = OTHERPROP) -> None:
    """Put up to ``count`` small objects on the surface ``rect`` = (x0, y0, x1, y1) at height z."""
    x0, y0, x1, y1 = rect
    taken: list[tuple[float, float, float]] = []
    for _ in range(count * 4):
        if len(taken) >= count:
            break
        obj = _Item().add(label, _small_object(rng)).centred()
        sx, sy, _ = obj.size
        if sx > x1 - x0 or sy > y1 - y0:
            continue
        x, y = _u(rng, x0 + sx / 2, x1 - sx / 2), _u(rng, y0 + sy / 2, y1 - sy / 2)
        r = 0.5 * np.hypot(sx, sy)
        if any(np.hypot(x - a, y - b) < r + c for a, b, c in taken):
            continue
        taken.append((x, y, r))
        item.extend(obj, x, y, z)


# ------------------------------------------------------------------ seating


def _office_chair(rng) -> _Item:
    seat_h, sw, sd, st = _u(rng, 0.45, 0.52), _u(rng, 0.46, 0.55), _u(rng, 0.44, 0.52), _u(rng, 0.07, 0.11)
    parts = [P.cylinder(0.05, 0.06, 12, base=(0, 0, 0.06)), P.cylinder(0.025, seat_h - st - 0.1, 10, base=(0, 0, 0.1))]
    reach, phase = _u(rng, 0.28, 0.34), _u(rng, 0, 2 * np.pi)
    for k in range(5):
        a = phase + 2 * np.pi * k / 5
        end = (reach * np.cos(a), reach * np.sin(a), 0.06)
        parts += [P.beam((0, 0, 0.09), end, 0.04, 0.03), P.sphere(0.027, 8, 4, center=(end[0], end[1], 0.027))]
    parts.append(P.superellipsoid((sw, sd, st), 0.35, 16, 8, center=(0, 0, seat_h - st / 2)))
    bw, bt, bh = sw * _u(rng, 0.85, 1.0), _u(rng, 0.06, 0.1), _u(rng, 0.45, 0.65)
    back = P.superellipsoid((bw, bt, bh), 0.4, 16, 8, center=(0, 0, bh / 2))
    tilt = _u(rng, 0.05, 0.25)
    by = sd / 2 - bt / 2 + 0.02
    parts.append(P.transform(back, P.rotation_x(-tilt), translation=(0, by, seat_h + 0.04)))
    parts.append(P.beam((0, sd * 0.2, seat_h - st), (0, by + 0.02, seat_h + 0.15), 0.05, 0.02))
    if _chance(rng, 0.65):
        for sx in (-1, 1):
            x = sx * (sw / 2 + 0.02)
            parts.append(P.beam((x, 0.0, seat_h - st * 0.5), (x, -0.02, seat_h + 0.2), 0.03))
            parts.append(P.superellipsoid((0.07, 0.26, 0.04), 0.4, 12, 6, center=(x, -0.02, seat_h + 0.21)))
    return _Item().add(CHAIR, parts).centred()


def _wooden_chair(rng) -> _Item:
    seat_h, w, d = _u(rng, 0.44, 0.48), _u(rng, 0.42, 0.5), _u(rng, 0.42, 0.5)
    lt = _u(rng, 0.03, 0.045)
    parts = [P.box([-w / 2, -d / 2, seat_h - 0.03], [w / 2, d / 2, seat_h])]
    back_top = seat_h + _u(rng, 0.4, 0.55)
    lean = _u(rng, 0.03, 0.1)
    for sx in (-1, 1):
        x = sx * (w / 2 - lt / 2)
        parts.append(P.beam((x * 1.03, -d / 2 + lt / 2 - 0.01, 0), (x, -d / 2 + lt / 2, seat_h - 0.03), lt))
        parts.append(P.beam((x * 1.03, d / 2 - lt / 2 + 0.03, 0), (x, d / 2 - lt / 2, seat_h), lt))
        parts.append(P.beam((x, d / 2 - lt / 2, seat_h - 0.01), (x, d / 2 - lt / 2 + lean, back_top), lt))
    # curved top rail (a bent thin sheet) and spindles
    xs = np.linspace(-w / 2, w / 2, 9)
    zs = np.linspace(back_top - _u(rng, 0.07, 0.15), back_top, 2)
    ys = d / 2 - lt / 2 + lean + 0.06 * (xs / (w / 2)) ** 2 - 0.03
    grid = np.stack(np.broadcast_arrays(xs[:, None], ys[:, None], zs[None, :]), axis=-1)
    parts.append(P.thick_sheet(grid, (0, 0.012, 0)))
    for k in range(int(rng.integers(0, 4))):
        x = -w / 4 + k * w / 6
        parts.append(P.beam((x, d / 2 - lt / 2, seat_h), (x, d / 2 - lt / 2 + lean * 0.8, zs[0] + 0.01), 0.018))
    if _chance(rng, 0.6):  # seat cushion
        parts.append(P.superellipsoid(
            (w - 0.04, d - 0.06, _u(rng, 0.03, 0.06)), 0.5, 12, 6, center=(0, -0.01, seat_h + 0.02)
        ))
    return _Item().add(CHAIR, parts).centred()


def _shell_chair(rng) -> _Item:
    """Stacking chair: one bent plastic shell on four tube legs."""
    seat_h, w, d = _u(rng, 0.44, 0.47), _u(rng, 0.44, 0.5), _u(rng, 0.42, 0.48)
    # profile in (y, z): flat seat then curving up into the back
    t = np.linspace(0, 1, 10)
    back_h = _u(rng, 0.38, 0.45)
    y = np.where(t < 0.5, -d / 2 + t * 2 * d * 0.95, d / 2 - 0.02 + (t - 0.5) * 0.15)
    z = np.where(t < 0.5, seat_h + 0.02 * np.sin(t * np.pi * 2), seat_h + (t - 0.5) * 2 * back_h)
    xs = np.linspace(-w / 2, w / 2, 6)
    grid = np.stack(np.broadcast_arrays(xs[:, None], y[None, :], z[None, :]), axis=-1)
    parts = [P.thick_sheet(grid, (0, 0, 0.008))]
    for sx in (-1, 1):
        for sy in (-1, 1):
            top = (sx * (w / 2 - 0.05), sy * (d / 2 - 0.06), seat_h)
            parts.append(P.cylinder_between((top[0] * 1.15, top[1] * 1.15, 0), top, 0.011, 8))
    return _Item().add(CHAIR, parts).centred()


def _armchair(rng) -> _Item:
    w, d, seat_h = _u(rng, 0.72, 0.92), _u(rng, 0.75, 0.92), _u(rng, 0.4, 0.46)
    arm_w, back_t = _u(rng, 0.12, 0.2), _u(rng, 0.15, 0.22)
    e = _u(rng, 0.25, 0.45)
    legs = _u(rng, 0.05, 0.12) if _chance(rng, 0.6) else 0.0
    base_top = seat_h - 0.12
    parts = [P.superellipsoid((w, d, base_top - legs), e, 16, 8, center=(0, 0, legs + (base_top - legs) / 2))]
    back_h = _u(rng, 0.75, 0.95)
    parts.append(P.superellipsoid(
        (w, back_t, back_h - legs), e, 16, 8, center=(0, d / 2 - back_t / 2, legs + (back_h - legs) / 2)
    ))
    arm_h = _u(rng, 0.55, 0.68)
    for sx in (-1, 1):
        parts.append(P.superellipsoid(
            (arm_w, d, arm_h - legs), e, 16, 8,
            center=(sx * (w / 2 - arm_w / 2), 0, legs + (arm_h - legs) / 2)
        ))
    parts.append(P.superellipsoid(
        (w - 2 * arm_w, d - back_t, 0.14), 0.3, 16, 8, center=(0, -back_t / 2, base_top + 0.06)
    ))
    if legs:
        parts += [P.frustum(
            0.02, 0.025, legs + 0.02, 8, base=(sx * (w / 2 - 0.06), sy * (d / 2 - 0.06), 0)
        ) for sx in (-1, 1) for sy in (-1, 1)]
    item = _Item().add(CHAIR, parts)
    if _chance(rng, 0.4):
        pillow = P.superellipsoid((0.4, 0.12, 0.4), 0.5, 12, 6)
        pillow = P.transform(pillow, P.rotation_x(-0.3), translation=(0, d / 2 - back_t - 0.08, seat_h + 0.2))
        item.add(PILLOW, [pillow])
    return item.centred()


def _sofa(rng) -> _Item:
    length, depth = _u(rng, 1.6, 2.5), _u(rng, 0.85, 1.05)
    seat_h, arm_w, back_t = _u(rng, 0.4, 0.47), _u(rng, 0.12, 0.28), _u(rng, 0.18, 0.3)
    e = _u(rng, 0.2, 0.45)
    legs = _u(rng, 0.04, 0.15) if _chance(rng, 0.6) else 0.0
    base_top = seat_h - _u(rng, 0.12, 0.18)
    back_h = _u(rng, 0.75, 0.98)
    arm_h = _u(rng, 0.5, 0.7)
    parts = [
        P.superellipsoid((length, depth, base_top - legs), e, 18, 8, center=(0, 0, legs + (base_top - legs) / 2)),
        P.superellipsoid(
            (length, back_t, back_h - legs), e, 18, 8, center=(0, depth / 2 - back_t / 2, legs + (back_h - legs) / 2)
        ),
    ]
    for sx in (-1, 1):
        parts.append(P.superellipsoid(
            (arm_w, depth, arm_h - legs), e, 16, 8,
            center=(sx * (length / 2 - arm_w / 2), 0, legs + (arm_h - legs) / 2)
        ))
    if legs:
        parts += [P.cylinder(
            0.022, legs + 0.02, 8, base=(sx * (length / 2 - 0.07), sy * (depth / 2 - 0.07), 0)
        ) for sx in (-1, 1) for sy in (-1, 1)]
    inner = length - 2 * arm_w
    n = int(rng.integers(2, 4))
    cw = inner / n
    for k in range(n):
        xc = -inner / 2 + (k + 0.5) * cw
        parts.append(P.superellipsoid(
            (cw - 0.01, depth - back_t, seat_h - base_top + 0.02), 0.3, 14, 6,
            center=(xc, -back_t / 2, (seat_h + base_top) / 2)
        ))
        if _chance(rng, 0.6):
            cushion = P.superellipsoid((cw - 0.02, 0.16, back_h - seat_h - 0.08), 0.35, 14, 6)
            parts.append(P.transform(
                cushion, P.rotation_x(-0.2),
                translation=(xc, depth / 2 - back_t - 0.06, (back_h + seat_h) / 2)
            ))
    item = _Item().add(SOFA, parts)
    pillows = []
    for _ in range(int(rng.integers(0, 4))):
        s = _u(rng, 0.35, 0.5)
        pil = P.superellipsoid((s, 0.13, s), 0.55, 12, 6)
        x = _u(rng, -inner / 2 + s / 2, inner / 2 - s / 2)
        pillows.append(P.transform(
            pil, P.rotation_z(_u(rng, -0.4, 0.4)) @ P.rotation_x(-_u(rng, 0.2, 0.6)),
            translation=(x, depth / 2 - back_t - 0.15, seat_h + s / 2 - 0.03)
        ))
    item.add(PILLOW, pillows)
    return item.centred()


# ------------------------------------------------------------------ tables and desks


def _table(rng, kind: str = "dining") -> _Item:
    if kind == "coffee":
        length, width, height = _u(rng, 0.8, 1.3), _u(rng, 0.45, 0.7), _u(rng, 0.38, 0.48)
    elif kind == "conference":
        length, width, height = _u(rng, 2.2, 3.6), _u(rng, 1.0, 1.4), _u(rng, 0.73, 0.77)
    elif kind == "side":
        length = width = _u(rng, 0.4, 0.6)
        height = _u(rng, 0.5, 0.65)
    else:
        length, width, height = _u(rng, 0.9, 1.6), _u(rng, 0.7, 0.95), _u(rng, 0.73, 0.78)
    top_t = _u(rng, 0.025, 0.05)
    under = height - top_t
    round_top = kind in ("dining", "side") and _chance(rng, 0.3)
    if round_top:
        width = length
        top = P.cylinder(length / 2, top_t, 28, base=(0, 0, under))
    else:
        top = P.superellipsoid((length, width, top_t), 0.1, 16, 4, center=(0, 0, under + top_t / 2))
    parts = [top]
    style = rng.choice(["legs", "frame", "pedestal" if round_top or kind == "side" else "panels"])
    if kind == "conference" and style == "legs":
        style = "panels"
    if style in ("legs", "frame"):
        t = _u(rng, 0.035, 0.06)
        ix, iy = length / 2 - _u(rng, 0.05, 0.12), width / 2 - _u(rng, 0.05, 0.1)
        if round_top:
            ix = iy = length / 2 * 0.6
        for sx in (-1, 1):
            for sy in (-1, 1):
                if style == "legs":
                    parts.append(P.frustum(t / 2 * 0.7, t / 2, under, 10, base=(sx * ix, sy * iy, 0)))
                else:
                    parts.append(P.box(
                        [sx * ix - t / 2, sy * iy - 0.015, 0], [sx * ix + t / 2, sy * iy + 0.015, under]
                    ))
        if style == "frame":  # metal frame: feet bars and an apron rail
            for sx in (-1, 1):
                parts.append(P.box([sx * ix - t / 2, -iy, 0], [sx * ix + t / 2, iy, 0.03]))
            parts.append(P.box([-ix, -iy, under - 0.06], [ix, -iy + 0.02, under]))
    elif style == "pedestal":
        parts.append(P.cylinder(_u(rng, 0.04, 0.07), under, 12))
        parts.append(P.frustum(_u(rng, 0.2, 0.3), 0.06, 0.06, 18))
    else:  # panel legs (2 or 3)
        n = 3 if length > 2.8 else 2
        for k in range(n):
            x = -length / 2 + 0.25 + k * (length - 0.5) / (n - 1)
            parts.append(P.box([x - 0.03, -width * 0.3, 0], [x + 0.03, width * 0.3, under]))
        if kind == "conference":  # cable tray
            parts.append(P.box([-length * 0.3, -0.1, under - 0.1], [length * 0.3, 0.1, under]))
    if kind == "coffee" and _chance(rng, 0.4):
        parts.append(P.box([-length / 2 + 0.05, -width / 2 + 0.05, 0.08], [length / 2 - 0.05, width / 2 - 0.05, 0.1]))
    item = _Item().add(TABLE, parts)
    n_obj = {"coffee": 3, "conference": 6, "side": 1}.get(kind, 4)
    _scatter_on(
        item, (-length / 2 + 0.05, -width / 2 + 0.05, length / 2 - 0.05, width / 2 - 0.05), height, rng,
        int(rng.integers(0, n_obj + 1))
    )
    return item.centred()


def _monitor(rng) -> list[Mesh]:
    w = _u(rng, 0.48, 0.7)
    h = w * 0.58
    return [
        P.box([-w / 2, -0.015, 0.1], [w / 2, 0.015, 0.1 + h]),
        P.box([-0.03, 0.01, 0.0], [0.03, 0.05, 0.25]),
        P.box([-0.12, -0.08, 0.0], [0.12, 0.12, 0.012]),
    ]


def _desk(rng) -> _Item:
    length, depth, height = _u(rng, 1.1, 1.8), _u(rng, 0.6, 0.85), _u(rng, 0.72, 0.76)
    top_t = _u(rng, 0.025, 0.04)
    under = height - top_t
    parts = [P.box([-length / 2, -depth / 2, under], [length / 2, depth / 2, height])]
    support = rng.choice(["panels", "metal", "metal"])
    if support == "panels":
        for sx in (-1, 1):
            x0, x1 = sorted((sx * length / 2, sx * (length / 2 - 0.025)))
            parts.append(P.box([x0, -depth / 2 + 0.02, 0], [x1, depth / 2, under]))
        parts.append(P.box(
            [-length / 2 + 0.025, depth / 2 - 0.04, under - 0.35],
            [length / 2 - 0.025, depth / 2 - 0.02, under]
        ))
    else:  # T-legs with feet
        for sx in (-1, 1):
            x = sx * (length / 2 - 0.08)
            parts += [
                P.box([x - 0.03, -0.03, 0.03], [x + 0.03, 0.03, under]),
                P.box([x - 0.03, -depth / 2 + 0.04, 0], [x + 0.03, depth / 2 - 0.04, 0.04]),
                P.box([x - 0.03, -depth / 2 + 0.05, under - 0.04], [x + 0.03, depth / 2 - 0.05, under])
            ]
        parts.append(P.box([-length / 2 + 0.08, 0.0, under - 0.08], [length / 2 - 0.08, 0.04, under - 0.02]))
    item = _Item().add(DESK, parts)
    if _chance(rng, 0.6):  # mobile drawer unit under the desk (a cabinet)
        cw, cd, ch = 0.4, min(0.55, depth - 0.1), _u(rng, 0.5, 0.62)
        x = rng.choice([-1, 1]) * (length / 2 - 0.3)
        cab = [P.box([x - cw / 2, -cd / 2, 0.05], [x + cw / 2, cd / 2, ch])]
        cab += [P.sphere(0.02, 6, 3, center=(x + sx * 0.15, sy * 0.2, 0.02)) for sx in (-1, 1) for sy in (-1, 1)]
        cab += [P.box(
            [x - 0.06, -cd / 2 - 0.02, z], [x + 0.06, -cd / 2, z + 0.015]
        ) for z in np.linspace(0.15, ch - 0.08, 3)]
        item.add(CABINET, cab)
    props: list[Mesh] = []
    n_mon = int(rng.choice([0, 1, 1, 2]))
    for k in range(n_mon):
        xc = (k - (n_mon - 1) / 2) * 0.6
        rot = P.rotation_z((k - (n_mon - 1) / 2) * -0.3)
        props += [P.transform(m, rot, translation=(xc, depth / 2 - 0.2, height)) for m in _monitor(rng)]
    if n_mon or _chance(rng, 0.5):
        props.append(P.box([-0.22, -depth / 2 + 0.08, height], [0.22, -depth / 2 + 0.23, height + 0.025]))  # keyboard
        props.append(P.superellipsoid((0.06, 0.1, 0.035), 0.5, 8, 4, center=(0.33, -depth / 2 + 0.16, height + 0.017)))
    if _chance(rng, 0.5):  # computer tower under the desk
        x = rng.choice([-1, 1]) * (length / 2 - 0.2)
        props.append(P.box([x - 0.1, -0.2, 0], [x + 0.1, 0.25, 0.45]))
    item.add(OTHERPROP, props)
    side = rng.choice([-1, 1])
    x0, x1 = sorted((side * (length / 2 - 0.05), side * (length / 2 - 0.35)))
    _scatter_on(item, (x0, -depth / 2 + 0.05, x1, depth / 2 - 0.05), height, rng, int(rng.integers(0, 3)))
    if _chance(rng, 0.3):
        lamp = _table_lamp(rng)
        item.extend(lamp, -side * (length / 2 - 0.15), depth / 2 - 0.15, height)
    return item.centred()


def _desk_with_chair(rng, chair_maker=None) -> _Item:
    """A desk and (optionally) a chair in front of it, turned towards it."""
    desk = _desk(rng)
    group = _Item().extend(desk)
    if chair_maker is not None:
        chair = chair_maker(rng)
        dist = desk.size[1] / 2 + chair.size[1] / 2 - _u(rng, 0.0, 0.25)
        group.extend(chair, _u(rng, -0.2, 0.2), -dist, 0.0, _facing((0, 1)) + _u(rng, -0.5, 0.5))
    return group.centred()


def _table_lamp(rng) -> _Item:
    base_r, height = _u(rng, 0.06, 0.1), _u(rng, 0.35, 0.55)
    shade = _u(rng, 0.12, 0.2)
    parts = [P.revolve([(base_r, 0), (base_r * 0.8, 0.1), (0.015, 0.15), (0.015, height - 0.1)], 12)]
    parts.append(P.revolve(
        [(shade, height - 0.2), (shade * 0.6, height), (shade * 0.6 - 0.005, height), (shade - 0.005, height - 0.195)],
        16
    ))
    return _Item().add(LAMP, parts).centred()


def _floor_lamp(rng) -> _Item:
    height = _u(rng, 1.5, 1.9)
    parts = [P.cylinder(_u(rng, 0.13, 0.18), 0.03, 16), P.cylinder(0.012, height - 0.15, 8, base=(0, 0, 0.03))]
    if _chance(rng, 0.5):
        parts.append(P.revolve([(0.05, height - 0.15), (0.2, height), (0.195, height), (0.045, height - 0.145)], 16))
    else:
        parts.append(P.cylinder(_u(rng, 0.15, 0.22), 0.3, 16, base=(0, 0, height - 0.3)))
    return _Item().add(LAMP, parts).centred()


# ------------------------------------------------------------------ bedroom and storage


def _bed(rng) -> _Item:
    length = _u(rng, 1.95, 2.15)
    width = _u(rng, 0.9, 1.2) if _chance(rng, 0.3) else _u(rng, 1.4, 1.85)
    frame_top = _u(rng, 0.2, 0.4)
    mat_t = _u(rng, 0.18, 0.3)
    top = frame_top + mat_t
    hb_t = _u(rng, 0.06, 0.12)
    y_head = length / 2
    parts = [P.superellipsoid(
        (width + 0.04, length - hb_t, frame_top), 0.15, 16, 6, center=(0, -hb_t / 2, frame_top / 2)
    )]
    parts.append(P.superellipsoid(
        (width, length - hb_t - 0.02, mat_t), 0.25, 18, 8,
        center=(0, -hb_t / 2, frame_top + mat_t / 2 - 0.01)
    ))
    hb_h = _u(rng, 0.9, 1.4)
    if _chance(rng, 0.5):  # upholstered headboard
        parts.append(P.superellipsoid((width + 0.1, hb_t, hb_h), 0.3, 16, 8, center=(0, y_head - hb_t / 2, hb_h / 2)))
    else:
        parts.append(P.box([-width / 2 - 0.05, y_head - hb_t, 0], [width / 2 + 0.05, y_head, hb_h]))
    # blanket: a wrinkled sheet over most of the mattress, hanging down the sides and foot
    over, drop = _u(rng, 0.04, 0.08), _u(rng, 0.15, top - 0.05)
    y_cover = y_head - hb_t - _u(rng, 0.45, 0.75)
    xs = np.linspace(-width / 2 - over, width / 2 + over, 16)
    ys = np.linspace(-length / 2 - over, y_cover, 18)
    X, Y = np.meshgrid(xs, ys, indexing="ij")
    out = np.maximum(np.clip(np.abs(X) - width / 2, 0, None), np.clip(-length / 2 - Y, 0, None)) / over
    wrinkle = 0.012 * np.sin(X * _u(rng, 6, 14) + Y * _u(rng, 3, 9)) + rng.normal(0, 0.004, X.shape)
    Z = top + 0.02 + wrinkle - np.clip(out, 0, 1) * drop
    fold = (Y > y_cover - 0.25) & (np.abs(X) <= width / 2)  # folded-back edge, a bit thicker
    Z = Z + fold * 0.03
    parts.append(P.thick_sheet(np.stack([X, Y, Z], axis=-1), (0, 0, 0.012)))
    item = _Item().add(BED, parts)
    pillows = []
    n = 1 if width < 1.3 else 2
    for k in range(n + int(rng.integers(0, 2))):
        pw = _u(rng, 0.5, 0.7)
        xc = (-width / 2 + (k % n + 0.5) * width / n) + _u(rng, -0.05, 0.05)
        pil = P.superellipsoid((pw, _u(rng, 0.35, 0.45), _u(rng, 0.1, 0.16)), 0.55, 14, 6)
        lean = P.rotation_z(_u(rng, -0.15, 0.15)) @ P.rotation_x(-_u(rng, 0.0, 0.6) if k >= n else -_u(rng, 0.0, 0.25))
        pillows.append(P.transform(
            pil, lean,
            translation=(xc, y_head - hb_t - 0.25 - 0.1 * (k >= n), top + 0.08 + 0.08 * (k >= n))
        ))
    item.add(PILLOW, pillows)
    return item.centred()


def _cabinet_box(rng, w, d, h, label, drawers=0, doors=0, plinth=0.06) -> _Item:
    parts = [P.box([-w / 2, -d / 2, plinth], [w / 2, d / 2, h])]
    if plinth:
        parts.append(P.box([-w / 2 + 0.03, -d / 2 + 0.04, 0], [w / 2 - 0.03, d / 2, plinth]))
    fronts = []
    if drawers:
        hgt = (h - plinth) / drawers
        for k in range(drawers):
            z0 = plinth + k * hgt
            fronts += [P.box([-w / 2 + 0.01, -d / 2 - 0.012, z0 + 0.005], [w / 2 - 0.01, -d / 2, z0 + hgt - 0.005]),
                       P.box([-0.07, -d / 2 - 0.035, z0 + hgt / 2 - 0.01], [0.07, -d / 2 - 0.012, z0 + hgt / 2 + 0.01])]
    elif doors:
        dw = w / doors
        for k in range(doors):
            x0 = -w / 2 + k * dw
            hx = x0 + (dw - 0.06 if k % 2 == 0 else 0.06)
            fronts += [P.box([x0 + 0.005, -d / 2 - 0.015, plinth + 0.01], [x0 + dw - 0.005, -d / 2, h - 0.01]),
                       P.box([hx - 0.01, -d / 2 - 0.04, h * 0.55 - 0.1], [hx + 0.01, -d / 2 - 0.015, h * 0.55 + 0.1])]
    return _Item().add(label, parts + fronts)


def _nightstand(rng) -> _Item:
    item = _cabinet_box(
        rng, _u(rng, 0.4, 0.55), _u(rng, 0.35, 0.45), _u(rng, 0.48, 0.62), OTHERFURNITURE,
        drawers=int(rng.integers(1, 3)), plinth=0.04
    )
    lo, hi = item.bounds()
    if _chance(rng, 0.7):
        item.extend(_table_lamp(rng), 0.0, 0.05, hi[2])
    return item.centred()


def _bookshelf(rng) -> _Item:
    width, depth, height = _u(rng, 0.7, 1.2), _u(rng, 0.28, 0.4), _u(rng, 0.9, 2.1)
    t = _u(rng, 0.018, 0.03)
    parts = [
        P.box([-width / 2, -depth / 2, 0], [-width / 2 + t, depth / 2, height]),
        P.box([width / 2 - t, -depth / 2, 0], [width / 2, depth / 2, height]),
        P.box([-width / 2, -depth / 2, height - t], [width / 2, depth / 2, height]),
        P.box([-width / 2 + t, depth / 2 - 0.01, 0], [width / 2 - t, depth / 2, height]),
        P.box([-width / 2 + t, -depth / 2, 0], [width / 2 - t, depth / 2, 0.08]),
    ]
    n_gaps = max(2, int(round((height - 0.08) / _u(rng, 0.3, 0.38))))
    levels = [0.08] + list(0.08 + (height - 0.08 - t) * np.arange(1, n_gaps) / n_gaps)
    for z in levels[1:]:
        parts.append(P.box([-width / 2 + t, -depth / 2, z - t], [width / 2 - t, depth / 2, z]))
    gap_h = (height - 0.08 - t) / n_gaps - t
    books, decor = [], []
    for z in levels:
        x = -width / 2 + t + 0.005
        end = width / 2 - t - 0.01
        fill = _u(rng, 0.3, 1.0)
        while x < end:
            if rng.random() > fill:
                gap = _u(rng, 0.05, 0.2)
                if _chance(rng, 0.3) and x + 0.12 < end:
                    decor.append(P.box_centered(
                        (0.1, 0.1, min(gap_h * 0.8, 0.15)),
                        (x + 0.06, -0.02, z + min(gap_h * 0.8, 0.15) / 2), _u(rng, 0, 1)
                    ))
                x += gap
                continue
            bw = _u(rng, 0.015, 0.05)
            bh = min(_u(rng, 0.16, 0.3), gap_h - 0.01)
            bd = min(_u(rng, 0.14, 0.25), depth - 0.03)
            if x + bw > end:
                break
            lean = _u(rng, -0.25, 0.25) if _chance(rng, 0.15) else 0.0
            book = P.box([0, -bd / 2, 0], [bw, bd / 2, bh])
            books.append(P.transform(
                book, P.rotation_y(lean),
                translation=(x + (bh * np.sin(lean) if lean > 0 else 0), depth / 2 - 0.02 - bd / 2, z)
            ))
            x += bw + (bh * abs(np.sin(lean)) if lean else 0.001)
    # books are annotated with their shelf (one instance)
    item = _Item().add(BOOKSHELF, parts + books).add(OTHERPROP, decor)
    return item.centred()


# ------------------------------------------------------------------ bathroom and kitchen


def _toilet(rng) -> _Item:
    bowl_h, r = _u(rng, 0.38, 0.42), _u(rng, 0.17, 0.2)
    elong = _u(rng, 1.3, 1.55)
    foot = _u(rng, 0.1, 0.13)
    profile = [
        (foot * 1.3, 0.0), (foot, 0.05), (foot * 1.1, bowl_h * 0.4), (r * 0.95, bowl_h * 0.8), (r, bowl_h),
        (r - 0.02, bowl_h), (r * 0.6, bowl_h * 0.6), (0.0, bowl_h * 0.6)
    ]
    by = -0.12
    parts = [P.transform(P.revolve(profile, 20), scale=(1, elong, 1), translation=(0, by, 0))]
    seat = P.revolve_loop([(r * 0.62, 0), (r * 1.03, 0), (r * 1.03, 0.025), (r * 0.62, 0.025)], 20)
    parts.append(P.transform(seat, scale=(1, elong, 1), translation=(0, by, bowl_h)))
    tank_w, tank_d, tank_h = _u(rng, 0.38, 0.5), _u(rng, 0.16, 0.22), _u(rng, 0.3, 0.42)
    y_back = by + r * elong + tank_d * 0.7
    if _chance(rng, 0.5):  # lid closed
        parts.append(P.transform(
            P.superellipsoid((2 * r, 2 * r, 0.03), 0.9, 18, 4), scale=(1.02, elong, 1),
            translation=(0, by, bowl_h + 0.04)
        ))
    else:
        lid = P.transform(P.superellipsoid((2 * r, 0.03, 2 * r * elong), 0.9, 18, 4), P.rotation_x(-0.12))
        parts.append(P.transform(lid, translation=(0, y_back - tank_d - 0.04, bowl_h + r * elong + 0.02)))
    parts.append(P.superellipsoid(
        (tank_w, tank_d, tank_h), 0.2, 16, 6, center=(0, y_back - tank_d / 2, bowl_h + 0.02 + tank_h / 2)
    ))
    parts.append(P.box([-0.09, by + r * elong - 0.06, 0.0], [0.09, y_back - tank_d + 0.02, bowl_h]))
    parts.append(P.cylinder_between(
        (-tank_w / 2 + 0.05, y_back - tank_d, bowl_h + tank_h - 0.05),
        (-tank_w / 2 + 0.05, y_back - tank_d - 0.03, bowl_h + tank_h - 0.05), 0.012, 8
    ))
    return _Item().add(TOILET, parts).centred()


def _rect_basin(lx, ly, depth, wall, z0=0.0) -> list[Mesh]:
    x, y = lx / 2, ly / 2
    return [
        P.box([-x, -y, z0], [x, y, z0 + wall]),
        P.box([-x, -y, z0], [-x + wall, y, z0 + depth]), P.box([x - wall, -y, z0], [x, y, z0 + depth]),
        P.box([-x, -y, z0], [x, -y + wall, z0 + depth]), P.box([-x, y - wall, z0], [x, y, z0 + depth]),
    ]


def _counter_with_basin(rng, w, d, top_z, basin_w, basin_d, basin_depth, basin_x=0.0, label=CABINET, doors=2) -> _Item:
    """Base cabinet + counter top with a sink cut out; the basin and tap are labelled sink."""
    ct = top_z - 0.035
    plinth, low, wt = 0.08, top_z - basin_depth - 0.03, 0.02
    # hollow carcass: a low solid part, then thin walls up to the counter (room for the basin)
    carcass = [
        P.box([-w / 2 + 0.03, -d / 2 + 0.04, 0], [w / 2 - 0.03, d / 2, plinth]),
        P.box([-w / 2, -d / 2, plinth], [w / 2, d / 2, low]),
        P.box([-w / 2, -d / 2, low], [w / 2, -d / 2 + wt, ct]), P.box([-w / 2, d / 2 - wt, low], [w / 2, d / 2, ct]),
        P.box([-w / 2, -d / 2, low], [-w / 2 + wt, d / 2, ct]), P.box([w / 2 - wt, -d / 2, low], [w / 2, d / 2, ct]),
    ]
    dw = w / doors
    for k in range(doors):
        x0 = -w / 2 + k * dw
        hx = x0 + (dw - 0.06 if k % 2 == 0 else 0.06)
        carcass += [P.box([x0 + 0.005, -d / 2 - 0.015, plinth + 0.01], [x0 + dw - 0.005, -d / 2, ct - 0.01]),
                    P.box([hx - 0.01, -d / 2 - 0.04, ct - 0.25], [hx + 0.01, -d / 2 - 0.015, ct - 0.08])]
    item = _Item().add(label, carcass)
    x0, x1 = basin_x - basin_w / 2, basin_x + basin_w / 2
    y0, y1 = -basin_d / 2 - 0.02, basin_d / 2 - 0.02
    counter = [
        P.box([-w / 2 - 0.02, -d / 2 - 0.03, ct], [x0, d / 2, top_z]),
        P.box([x1, -d / 2 - 0.03, ct], [w / 2 + 0.02, d / 2, top_z]),
        P.box([x0, -d / 2 - 0.03, ct], [x1, y0, top_z]),
        P.box([x0, y1, ct], [x1, d / 2, top_z]),
    ]
    item.add(label, counter)
    basin = [P.transform(m, translation=(basin_x, -0.02, 0)) for m in _rect_basin(
        basin_w, basin_d, basin_depth, 0.015, top_z - basin_depth
    )]
    basin += [P.box([x0 - 0.01, y0 - 0.01, top_z], [x1 + 0.01, y0 + 0.005, top_z + 0.005])]
    basin += [P.cylinder(0.018, _u(rng, 0.15, 0.3), 10, base=(basin_x, y1 + 0.04, top_z)),]
    h = basin[-1].bounds()[1][2]
    basin.append(P.cylinder_between(
        (basin_x, y1 + 0.04, h - 0.02), (basin_x, y1 + 0.04 - _u(rng, 0.1, 0.18), h - 0.05), 0.012, 8
    ))
    item.add(SINK, basin)
    return item


def _vanity(rng) -> _Item:
    w, d = _u(rng, 0.6, 1.2), _u(rng, 0.45, 0.55)
    top_z = _u(rng, 0.82, 0.9)
    item = _counter_with_basin(
        rng, w, d, top_z, _u(rng, 0.4, min(0.55, w - 0.15)), _u(rng, 0.3, 0.38), _u(rng, 0.13, 0.18),
        doors=2 if w > 0.8 else 1
    )
    _scatter_on(item, (-w / 2 + 0.01, -d / 2 + 0.02, -w / 2 + 0.1, d / 2 - 0.05), top_z, rng, 1)
    return item.centred()


def _pedestal_sink(rng) -> _Item:
    bw, bd, top = _u(rng, 0.5, 0.65), _u(rng, 0.4, 0.5), _u(rng, 0.82, 0.9)
    r = 0.5
    prof = [
        (0.0, top - 0.2), (r * 0.7, top - 0.2), (r, top), (r - 0.05, top), (r * 0.65, top - 0.16),
        (0.0, top - 0.16)
    ]
    parts = [P.transform(P.revolve(prof, 20), scale=(bw / 2 / r, bd / 2 / r, 1.0))]
    parts.append(P.box([-bw / 2, bd / 2 - 0.12, top - 0.2], [bw / 2, bd / 2, top]))
    parts.append(P.frustum(_u(rng, 0.12, 0.16), _u(rng, 0.08, 0.1), top - 0.18, 16, base=(0, 0.03, 0)))
    parts.append(P.cylinder(0.018, 0.15, 10, base=(0, bd / 2 - 0.06, top)))
    parts.append(P.cylinder_between((0, bd / 2 - 0.06, top + 0.13), (0, bd / 2 - 0.18, top + 0.1), 0.012, 8))
    return _Item().add(SINK, parts).centred()


def _bathtub(rng, length: float | None = None) -> _Item:
    length = length or _u(rng, 1.5, 1.75)
    width, height = _u(rng, 0.7, 0.82), _u(rng, 0.5, 0.6)
    wall = _u(rng, 0.07, 0.12)
    parts = _rect_basin(length, width, height, wall)
    # rounded inner basin floor and a sloped backrest
    inner = P.superellipsoid((length - 2 * wall, width - 2 * wall, 0.16), 0.3, 16, 6, center=(0, 0, wall + 0.02))
    parts.append(inner)
    parts.append(P.transform(
        P.box([-0.05, -width / 2 + wall, 0], [0.05, width / 2 - wall, height * 0.8]), P.rotation_y(0.5),
        translation=(-length / 2 + wall + 0.1, 0, wall)
    ))
    parts += [P.cylinder(0.02, 0.12, 10, base=(length / 2 - 0.1, width / 2 - wall / 2, height)),
              P.cylinder_between((length / 2 - 0.1, width / 2 - wall / 2, height + 0.1),
                                 (length / 2 - 0.1, width / 2 - wall - 0.08, height + 0.08), 0.015, 8)]
    return _Item().add(BATHTUB, parts).centred()


def _trash_can(rng) -> _Item:
    r, h = _u(rng, 0.12, 0.2), _u(rng, 0.3, 0.6)
    if _chance(rng, 0.5):
        return _Item().add(
            OTHERFURNITURE,
            [P.revolve([(r * 0.85, 0.0), (r, h), (r - 0.01, h), (r * 0.85 - 0.01, 0.01)], 16)]
        ).centred()
    return _Item().add(OTHERFURNITURE, _rect_basin(2 * r, 1.6 * r, h, 0.01)).centred()


def _box_stack(rng) -> _Item:
    parts, z = [], 0.0
    base = rng.uniform(0.25, 0.6, size=2)
    for _ in range(int(rng.integers(1, 4))):
        s = np.array([*(base * _u(rng, 0.6, 1.0)), _u(rng, 0.15, 0.45)])
        parts.append(P.box_centered(s, (_u(rng, -0.03, 0.03), _u(rng, -0.03, 0.03), z + s[2] / 2), _u(rng, -0.2, 0.2)))
        z += s[2]
    return _Item().add(BOX, parts).centred()


def _bag(rng) -> _Item:
    if _chance(rng, 0.5):  # backpack, standing or lying
        body = P.superellipsoid((_u(rng, 0.28, 0.35), _u(rng, 0.15, 0.22), _u(rng, 0.38, 0.48)), 0.5, 12, 6)
        body = P.transform(body, P.rotation_x(_u(rng, -0.3, 0.3) if _chance(rng, 0.7) else np.pi / 2))
        lo = body.bounds()[0]
        return _Item().add(BAG, [P.transform(body, translation=(0, 0, -lo[2]))]).centred()
    size = (_u(rng, 0.4, 0.7), _u(rng, 0.25, 0.35), _u(rng, 0.22, 0.3))
    return _Item().add(BAG, [P.superellipsoid(size, 0.7, 14, 6, center=(0, 0, size[2] / 2))]).centred()


def _plant(rng) -> _Item:
    pot_r, pot_h = _u(rng, 0.12, 0.22), _u(rng, 0.2, 0.35)
    parts = [P.revolve([(pot_r * 0.75, 0.0), (pot_r, pot_h), (pot_r - 0.01, pot_h), (pot_r * 0.75 - 0.01, 0.02)], 14)]
    top = pot_h + _u(rng, 0.3, 1.1)
    for _ in range(int(rng.integers(3, 7))):
        c = (_u(rng, -0.15, 0.15), _u(rng, -0.15, 0.15), _u(rng, pot_h + 0.1, top))
        s = _u(rng, 0.12, 0.25)
        parts.append(P.ellipsoid((s, s, s * 0.8), 10, 5, center=c))
    parts.append(P.cylinder(0.015, top - pot_h, 6, base=(0, 0, pot_h - 0.05)))
    return _Item().add(OTHERPROP, parts).centred()


# ------------------------------------------------------------------ the room shell


@dataclass
class _Opening:
    u0: float
    u1: float
    z0: float
    z1: float
    kind: str  # "door" or "window"


class _Layout:
    """Room shell and a 2-D occupancy map of axis-aligned footprints."""

    def __init__(self, sx: float, sy: float, height: float, rng: np.random.Generator):
        self.sx, self.sy, self.height, self.rng = sx, sy, height, rng
        self.parts: list[tuple[Mesh, int]] = []
        self.occupied: list[tuple[float, float, float, float]] = []
        self.openings: list[list[_Opening]] = [[], [], [], []]

    # wall k: origin o_k, direction d_k (along the wall), inward normal n_k = rot90(d_k)
    def wall_frame(self, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        sx, sy = self.sx, self.sy
        origin = [(0, 0), (sx, 0), (sx, sy), (0, sy)][k]
        direction = [(1, 0), (0, 1), (-1, 0), (0, -1)][k]
        d = np.array(direction, dtype=np.float64)
        n = np.array([-d[1], d[0]])
        return np.array(origin, dtype=np.float64), d, n, (sx if k % 2 == 0 else sy)

    def wall_transform(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Rotation (3, 3) and translation (3,) from wall-local (u along, v into room, z)."""
        o, d, n, _ = self.wall_frame(k)
        rot = np.array([[d[0], n[0], 0.0], [d[1], n[1], 0.0], [0.0, 0.0, 1.0]])
        return rot, np.array([o[0], o[1], 0.0])

    def to_world(self, k: int, meshes: list[Mesh]) -> list[Mesh]:
        rot, t = self.wall_transform(k)
        return [P.transform(m, rot, translation=t) for m in meshes]

    def free(self, rect, margin: float = 0.0) -> bool:
        x0, y0, x1, y1 = rect
        if x0 < -1e-6 or y0 < -1e-6 or x1 > self.sx + 1e-6 or y1 > self.sy + 1e-6:
            return False
        for a0, b0, a1, b1 in self.occupied:
            if x0 < a1 + margin and a0 < x1 + margin and y0 < b1 + margin and b0 < y1 + margin:
                return False
        return True

    def footprint(self, item: _Item, x: float, y: float, theta: float) -> tuple[float, float, float, float]:
        lo, hi = item.bounds()
        corners = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
        c, s = np.cos(theta), np.sin(theta)
        world = corners @ np.array([[c, s], [-s, c]]) + (x, y)
        return (*world.min(axis=0), *world.max(axis=0))

    def place(self, item: _Item, x: float, y: float, theta: float, margin: float = 0.05, check: bool = True) -> bool:
        rect = self.footprint(item, x, y, theta)
        if check and not self.free(rect, margin):
            return False
        self.occupied.append(rect)
        rot = P.rotation_z(theta)
        for mesh, label in item.parts:
            self.parts.append((P.transform(mesh, rot, translation=(x, y, 0.0)), label))
        return True

    def wall_slot(self, item: _Item, k: int, u: float, gap: float = 0.01):
        """(x, y, theta) placing ``item`` with its back against wall k, centred at u."""
        o, d, n, _ = self.wall_frame(k)
        depth = item.size[1]
        pos = o + u * d + (depth / 2 + gap) * n
        return float(pos[0]), float(pos[1]), _facing(n)

    def blocks_window(self, k: int, u0: float, u1: float, top: float) -> bool:
        return any(o.u0 < u1 and u0 < o.u1 and top > o.z0 - 0.02 for o in self.openings[k] if o.kind == "window")

    def place_on_wall(
        self, item: _Item, walls=None, tries: int = 25, gap: float = 0.01, margin: float = 0.05, u=None
    ) -> tuple | None:
        """Put ``item`` against a random wall (of ``walls``); returns (k, u) or None."""
        width, height = item.size[0], item.size[2]
        walls = list(range(4)) if walls is None else list(walls)
        for _ in range(tries):
            k = int(self.rng.choice(walls))
            length = self.wall_frame(k)[3]
            if width > length - 0.1:
                continue
            uu = u if u is not None else _u(self.rng, width / 2 + 0.05, length - width / 2 - 0.05)
            if self.blocks_window(k, uu - width / 2, uu + width / 2, height):
                continue
            x, y, theta = self.wall_slot(item, k, uu, gap)
            if self.place(item, x, y, theta, margin):
                return k, uu
        return None

    def place_free(self, item: _Item, tries: int = 40, margin: float = 0.1, theta=None, region=None) -> tuple | None:
        """Put ``item`` anywhere free (random azimuth unless ``theta``); returns (x, y, theta)."""
        size = item.size
        r = 0.5 * np.hypot(size[0], size[1])
        x0, y0, x1, y1 = region or (0.0, 0.0, self.sx, self.sy)
        for _ in range(tries):
            th = _u(self.rng, 0, 2 * np.pi) if theta is None else theta
            lo_x, hi_x = x0 + min(r, (x1 - x0) / 2), x1 - min(r, (x1 - x0) / 2)
            lo_y, hi_y = y0 + min(r, (y1 - y0) / 2), y1 - min(r, (y1 - y0) / 2)
            x, y = _u(self.rng, lo_x, hi_x), _u(self.rng, lo_y, hi_y)
            if self.place(item, x, y, th, margin):
                return x, y, th
        return None

    def add_opening(
        self, k: int, width: float, z0: float, z1: float, kind: str, margin: float = 0.25, u=None
    ) -> _Opening | None:
        length = self.wall_frame(k)[3]
        if width > length - 2 * margin:
            return None
        for _ in range(20):
            uu = u if u is not None else _u(self.rng, margin + width / 2, length - margin - width / 2)
            u0, u1 = uu - width / 2, uu + width / 2
            if all(u1 + 0.3 < o.u0 or o.u1 + 0.3 < u0 for o in self.openings[k]):
                opening = _Opening(u0, u1, z0, z1, kind)
                self.openings[k].append(opening)
                return opening
            if u is not None:
                return None
        return None

    def build_shell(self) -> None:
        """Floor slab and the four walls with holes for their openings."""
        t, sx, sy, h = WALL_THICKNESS, self.sx, self.sy, self.height
        self.parts.append((P.box([-t, -t, -0.06], [sx + t, sy + t, 0.0]), FLOOR))
        for k in range(4):
            length = self.wall_frame(k)[3]
            pieces, cursor = [], -t
            for o in sorted(self.openings[k], key=lambda o: o.u0):
                pieces.append(P.box([cursor, -t, 0], [o.u0, 0, h]))
                if o.z0 > 0.01:
                    pieces.append(P.box([o.u0, -t, 0], [o.u1, 0, o.z0]))
                pieces.append(P.box([o.u0, -t, o.z1], [o.u1, 0, h]))
                cursor = o.u1
            pieces.append(P.box([cursor, -t, 0], [length + t, 0, h]))
            # wall-local v axis points into the room: the wall body is v in [-t, 0]
            self.parts.append((Mesh.concatenate(self.to_world(k, pieces)), WALL))


def _add_door(layout: _Layout, rng, k: int | None = None) -> None:
    k = int(rng.integers(0, 4)) if k is None else k
    width, height = _u(rng, 0.8, 0.95), _u(rng, 2.0, 2.1)
    o = layout.add_opening(k, width, 0.0, height, "door")
    if o is None:
        return
    t = WALL_THICKNESS
    leaf_t = 0.04
    angle = 0.0 if _chance(rng, 0.45) else _u(rng, 0.3, 1.7)
    hinge_left = _chance(rng, 0.5)
    leaf = [P.box([0, 0, 0.01], [width - 0.01, leaf_t, height - 0.01])]
    hx = width - 0.08
    leaf += [
        P.cylinder_between((hx, leaf_t, 1.0), (hx, leaf_t + 0.06, 1.0), 0.01, 8),
        P.cylinder_between((hx, leaf_t + 0.06, 1.0), (hx - 0.12, leaf_t + 0.06, 1.0), 0.01, 8)
    ]
    leaf += [P.cylinder_between((hx, 0, 1.0), (hx, -0.06, 1.0), 0.01, 8)]
    if hinge_left:
        meshes = [P.transform(m, P.rotation_z(angle), translation=(o.u0, -leaf_t - 0.01, 0)) for m in leaf]
    else:
        meshes = [P.transform(
            m, P.rotation_z(-angle), scale=(-1, 1, 1), translation=(o.u1, -leaf_t - 0.01, 0)
        ) for m in leaf]
    casing = [
        P.box([o.u0 - 0.07, -t - 0.01, 0], [o.u0, 0.015, height + 0.07]),
        P.box([o.u1, -t - 0.01, 0], [o.u1 + 0.07, 0.015, height + 0.07]),
        P.box([o.u0, -t - 0.01, height], [o.u1, 0.015, height + 0.07]),
    ]
    layout.parts.append((Mesh.concatenate(layout.to_world(k, meshes + casing)), DOOR))
    # keep the swing area (and the way in) free of furniture
    rot, tr = layout.wall_transform(k)
    corners = np.array([[o.u0 - 0.1, 0, 0], [o.u1 + 0.1, width + 0.2, 0]]) @ rot.T + tr
    layout.occupied.append((*corners[:, :2].min(axis=0), *corners[:, :2].max(axis=0)))


def _curtain_panel(rng, width: float, height: float, offset: float) -> Mesh:
    """Gathered curtain panel: irregular folds, deeper towards the bottom, in wall-local (u, v, z)."""
    nu, nv = max(10, int(width / 0.02)), 7
    u = np.linspace(0.0, width, nu)
    z = np.linspace(0.0, height, nv)
    period = _u(rng, 0.1, 0.2)
    phase = np.cumsum(rng.uniform(0.6, 1.4, size=nu)) * (2 * np.pi * (u[1] - u[0]) / period)
    amp = _u(rng, 0.025, 0.05) * (1.0 + 0.6 * (1 - z / height))
    v = offset + amp[None, :] * np.sin(phase)[:, None]
    grid = np.stack(np.broadcast_arrays(u[:, None], v, z[None, :]), axis=-1)
    return P.thick_sheet(grid, (0, 0.005, 0))


def _add_window(layout: _Layout, rng, k: int | None = None, curtains: float = 0.0, radiator: float = 0.3) -> bool:
    k = int(rng.integers(0, 4)) if k is None else k
    width = _u(rng, 0.8, min(2.2, layout.wall_frame(k)[3] - 0.8))
    z0 = _u(rng, 0.75, 1.0)
    z1 = min(layout.height - 0.25, z0 + _u(rng, 1.0, 1.5))
    o = layout.add_opening(k, width, z0, z1, "window", margin=0.35)
    if o is None:
        return False
    t, f = WALL_THICKNESS, _u(rng, 0.04, 0.07)
    frame = [
        P.box([o.u0, -t * 0.7, z0], [o.u0 + f, -t * 0.3, z1]), P.box([o.u1 - f, -t * 0.7, z0], [o.u1, -t * 0.3, z1]),
        P.box([o.u0, -t * 0.7, z0], [o.u1, -t * 0.3, z0 + f]), P.box([o.u0, -t * 0.7, z1 - f], [o.u1, -t * 0.3, z1]),
        P.box([o.u0 - 0.04, -t * 0.5, z0 - 0.03], [o.u1 + 0.04, _u(rng, 0.03, 0.08), z0]),  # sill
    ]
    if width > 1.0 or _chance(rng, 0.5):
        um = (o.u0 + o.u1) / 2
        frame.append(P.box([um - f / 2, -t * 0.7, z0], [um + f / 2, -t * 0.3, z1]))
    if _chance(rng, 0.4):
        zm = z0 + (z1 - z0) * _u(rng, 0.55, 0.75)
        frame.append(P.box([o.u0, -t * 0.7, zm - f / 2], [o.u1, -t * 0.3, zm + f / 2]))
    layout.parts.append((Mesh.concatenate(layout.to_world(k, frame)), WINDOW))
    if _chance(rng, radiator):
        rad = [P.box([o.u0 + 0.1, 0.03, 0.12], [o.u1 - 0.1, 0.11, z0 - 0.12])]
        layout.parts.append((Mesh.concatenate(layout.to_world(k, rad)), OTHERFURNITURE))
        rot, tr = layout.wall_transform(k)
        c = np.array([[o.u0, 0, 0], [o.u1, 0.12, 0]]) @ rot.T + tr
        layout.occupied.append((*c[:, :2].min(axis=0), *c[:, :2].max(axis=0)))
    if _chance(rng, curtains):
        offset = _u(rng, 0.1, 0.15)
        top = min(layout.height - 0.02, z1 + _u(rng, 0.05, 0.2))
        bottom = _u(rng, 0.01, 0.05) if _chance(rng, 0.7) else z0 - 0.1
        closed = _chance(rng, 0.2)
        panels = []
        for side in (0, 1):
            pw = (o.u1 - o.u0) / 2 + 0.15 if closed else _u(rng, 0.25, 0.5)
            start = o.u0 - 0.2 if side == 0 else o.u1 + 0.2 - pw
            if closed and side == 1:
                start = (o.u0 + o.u1) / 2
            panel = _curtain_panel(rng, pw, top - bottom, offset)
            panels.append(P.transform(panel, translation=(start, 0, bottom)))
        layout.parts.append((Mesh.concatenate(layout.to_world(k, panels)), CURTAIN))
        rod = [P.cylinder_between((o.u0 - 0.3, offset, top + 0.03), (o.u1 + 0.3, offset, top + 0.03), 0.012, 8)]
        rod += [P.box([uu - 0.01, 0, top + 0.02], [uu + 0.01, offset, top + 0.04]) for uu in (o.u0 - 0.25, o.u1 + 0.25)]
        layout.parts.append((Mesh.concatenate(layout.to_world(k, rod)), OTHERPROP))
        rot, tr = layout.wall_transform(k)
        c = np.array([[o.u0 - 0.3, 0, 0], [o.u1 + 0.3, offset + 0.08, 0]]) @ rot.T + tr
        layout.occupied.append((*c[:, :2].min(axis=0), *c[:, :2].max(axis=0)))
    return True


def _add_wall_flat(
    layout: _Layout, rng, label: int, width: float, height: float, z_center: float, depth: float = 0.03
) -> None:
    """A picture / whiteboard / TV on a wall, avoiding openings."""
    for _ in range(10):
        k = int(rng.integers(0, 4))
        length = layout.wall_frame(k)[3]
        if width > length - 0.4:
            continue
        u = _u(rng, 0.2 + width / 2, length - 0.2 - width / 2)
        if any(o.u0 - 0.1 < u + width / 2 and u - width / 2 < o.u1 + 0.1 for o in layout.openings[k]):
            continue
        flat = [P.box([u - width / 2, 0, z_center - height / 2], [u + width / 2, depth, z_center + height / 2])]
        if label == PICTURE and _chance(rng, 0.5):  # frame rim
            flat.append(P.box(
                [u - width / 2 - 0.02, 0, z_center - height / 2 - 0.02],
                [u + width / 2 + 0.02, depth * 0.6, z_center + height / 2 + 0.02]
            ))
        layout.parts.append((Mesh.concatenate(layout.to_world(k, flat)), label))
        return


def _add_pictures(layout: _Layout, rng, count: int) -> None:
    for _ in range(count):
        w = _u(rng, 0.3, 1.1)
        _add_wall_flat(layout, rng, PICTURE, w, w * _u(rng, 0.6, 1.2), _u(rng, 1.35, 1.75))


def _add_clutter(layout: _Layout, rng, count: int) -> None:
    makers = [_box_stack, _box_stack, _bag, _bag, _trash_can, _plant]
    for _ in range(count):
        item = makers[int(rng.integers(0, len(makers)))](rng)
        if _chance(rng, 0.6):
            layout.place_on_wall(item, tries=8, margin=0.03, gap=_u(rng, 0.01, 0.1))
        else:
            layout.place_free(item, tries=8, margin=0.05)


def _chairs_around(rng, table: _Item, chair_maker, n_sides=(1, 1, 1, 1), spacing: float = 0.65) -> _Item:
    """The table plus chairs along its sides, facing it, pulled out by random amounts."""
    group = _Item().extend(table)
    length, width, _ = table.size
    for side, wanted in enumerate(n_sides):
        if not wanted:
            continue
        span = length if side % 2 == 0 else width
        count = max(1, int(span / spacing)) if wanted is True or wanted == 1 else int(wanted)
        for j in range(count):
            if _chance(rng, 0.15):
                continue  # an empty place
            chair = chair_maker(rng)
            cd = chair.size[1]
            along = (j + 0.5) * span / count - span / 2
            pull = _u(rng, -0.12, 0.25)
            if side == 0:
                x, y, face = along, -width / 2 - cd / 2 + 0.12 - pull, (0, 1)
            elif side == 2:
                x, y, face = along, width / 2 + cd / 2 - 0.12 + pull, (0, -1)
            elif side == 1:
                x, y, face = length / 2 + cd / 2 - 0.12 + pull, along, (-1, 0)
            else:
                x, y, face = -length / 2 - cd / 2 + 0.12 - pull, along, (1, 0)
            group.extend(chair, x, y, 0.0, _facing(face) + _u(rng, -0.35, 0.35))
    return group


# ------------------------------------------------------------------ room types


def _office(layout: _Layout, rng) -> None:
    _add_door(layout, rng)
    for _ in range(int(rng.integers(1, 3))):
        _add_window(layout, rng, curtains=0.3)
    chair_maker = _office_chair if _chance(rng, 0.8) else _wooden_chair
    for _ in range(int(rng.integers(1, 5))):
        layout.place_on_wall(_desk_with_chair(rng, chair_maker if _chance(rng, 0.85) else None), margin=0.02)
    for _ in range(int(rng.integers(0, 3)) + (1 if _chance(rng, 0.6) else 0)):
        layout.place_on_wall(_bookshelf(rng))
    for _ in range(int(rng.integers(0, 3))):
        cab = _cabinet_box(
            rng, _u(rng, 0.4, 0.9), _u(rng, 0.45, 0.6), _u(rng, 0.7, 1.35), CABINET,
            drawers=int(rng.integers(2, 5))
        )
        layout.place_on_wall(cab)
    if _chance(rng, 0.3):
        layout.place_on_wall(_sofa(rng))
    if _chance(rng, 0.3):
        layout.place_free(_chairs_around(rng, _table(rng, "dining"), _wooden_chair, (1, 0, 1, 0)), margin=0.15)
    _add_wall_flat(layout, rng, OTHERPROP, _u(rng, 1.2, 2.0), _u(rng, 0.9, 1.2), 1.45, 0.02)  # whiteboard
    _add_pictures(layout, rng, int(rng.integers(0, 3)))
    _add_clutter(layout, rng, int(rng.integers(2, 7)))


def _living_room(layout: _Layout, rng) -> None:
    _add_door(layout, rng)
    for _ in range(int(rng.integers(1, 4))):
        _add_window(layout, rng, curtains=0.75)
    sofa = _sofa(rng)
    spot = layout.place_on_wall(sofa, margin=0.05)
    if spot is not None and _chance(rng, 0.85):
        k, u = spot
        _, _, n, _ = layout.wall_frame(k)
        x, y, th = layout.wall_slot(sofa, k, u)
        dist = sofa.size[1] / 2 + _u(rng, 0.45, 0.7)
        table = _table(rng, "coffee")
        layout.place(
            table, x + n[0] * (dist + table.size[1] / 2), y + n[1] * (dist + table.size[1] / 2),
            th + _u(rng, -0.05, 0.05), margin=0.02
        )
    if _chance(rng, 0.35):
        layout.place_on_wall(_sofa(rng))
    for _ in range(int(rng.integers(0, 3))):
        layout.place_free(_armchair(rng), margin=0.15)
    if _chance(rng, 0.8):  # TV on a stand
        stand = _cabinet_box(
            rng, _u(rng, 1.0, 1.8), _u(rng, 0.35, 0.5), _u(rng, 0.4, 0.6), OTHERFURNITURE,
            doors=int(rng.integers(2, 4)), plinth=0.03
        )
        height = stand.bounds()[1][2]
        tw = _u(rng, 0.9, 1.4)
        tv = [P.box([-tw / 2, -0.03, height + 0.06], [tw / 2, 0.03, height + 0.06 + tw * 0.58]),
              P.box([-0.2, -0.1, height], [0.2, 0.1, height + 0.07])]
        stand.add(OTHERPROP, tv)
        layout.place_on_wall(stand)
    if _chance(rng, 0.6):
        layout.place_on_wall(_bookshelf(rng))
    if _chance(rng, 0.5):
        layout.place_on_wall(_table(rng, "side"), margin=0.02)
    if _chance(rng, 0.2):
        layout.place_on_wall(_desk(rng))
    if _chance(rng, 0.6):
        layout.place_on_wall(_floor_lamp(rng), margin=0.02)
    _add_pictures(layout, rng, int(rng.integers(1, 4)))
    _add_clutter(layout, rng, int(rng.integers(1, 5)))


def _bedroom(layout: _Layout, rng) -> None:
    _add_door(layout, rng)
    for _ in range(int(rng.integers(1, 3))):
        _add_window(layout, rng, curtains=0.8)
    bed = _bed(rng)
    group = _Item().extend(bed)
    bw, bl, _ = bed.size
    for side in (-1, 1):
        if _chance(rng, 0.7):
            ns = _nightstand(rng)
            group.extend(ns, side * (bw / 2 + ns.size[0] / 2 + 0.05), bl / 2 - ns.size[1] / 2 - 0.01)
    group = group.centred()
    if layout.place_on_wall(group, margin=0.05) is None:
        layout.place_on_wall(bed, margin=0.0, tries=60)
    if _chance(rng, 0.75):
        layout.place_on_wall(_desk_with_chair(rng, _office_chair if _chance(rng, 0.5) else _wooden_chair))
    if _chance(rng, 0.8):
        wardrobe = _cabinet_box(
            rng, _u(rng, 0.8, 1.8), _u(rng, 0.55, 0.65), _u(rng, 1.8, 2.2), OTHERFURNITURE,
            doors=int(rng.integers(2, 4))
        )
        layout.place_on_wall(wardrobe)
    if _chance(rng, 0.5):
        dresser = _cabinet_box(
            rng, _u(rng, 0.8, 1.4), _u(rng, 0.45, 0.55), _u(rng, 0.75, 1.0), OTHERFURNITURE,
            drawers=int(rng.integers(3, 5))
        )
        _scatter_on(dresser, (-0.3, -0.15, 0.3, 0.15), dresser.bounds()[1][2], rng, 2)
        layout.place_on_wall(dresser.centred())
    if _chance(rng, 0.3):
        layout.place_on_wall(_bookshelf(rng))
    if _chance(rng, 0.2):
        layout.place_free(_armchair(rng))
    _add_pictures(layout, rng, int(rng.integers(0, 3)))
    _add_clutter(layout, rng, int(rng.integers(2, 6)))


def _bathroom(layout: _Layout, rng) -> None:
    _add_door(layout, rng)
    if _chance(rng, 0.6):
        _add_window(layout, rng, curtains=0.0, radiator=0.0)
    if _chance(rng, 0.9):  # bathtub along a wall, in a corner
        for _ in range(10):
            k = int(rng.integers(0, 4))
            length = layout.wall_frame(k)[3]
            tub = _bathtub(rng, min(_u(rng, 1.5, 1.75), length - 0.02))
            u = tub.size[0] / 2 + 0.005 if _chance(rng, 0.5) else length - tub.size[0] / 2 - 0.005
            if layout.blocks_window(k, u - tub.size[0] / 2, u + tub.size[0] / 2, tub.size[2]):
                continue
            x, y, th = layout.wall_slot(tub, k, u, gap=0.005)
            if layout.place(tub, x, y, th, margin=0.0):
                if _chance(rng, 0.3):  # shower curtain (not a window curtain: otherprop)
                    panel = _curtain_panel(rng, tub.size[0] * _u(rng, 0.4, 0.9), 1.6, tub.size[1] + 0.02)
                    rot, tr = layout.wall_transform(k)
                    panel = P.transform(
                        P.transform(panel, translation=(u - tub.size[0] / 2, 0, 0.45)), rot, translation=tr
                    )
                    layout.parts.append((panel, OTHERPROP))
                break
    layout.place_on_wall(_toilet(rng), margin=0.1, gap=0.005, tries=60)
    makers = (_vanity, _pedestal_sink) if _chance(rng, 0.6) else (_pedestal_sink,)
    for maker in makers + (_pedestal_sink,):  # fall back to the small pedestal sink
        if layout.place_on_wall(maker(rng), margin=0.05, gap=0.005, tries=60) is not None:
            break
    if _chance(rng, 0.3):
        layout.place_on_wall(_cabinet_box(
            rng, _u(rng, 0.4, 0.6), _u(rng, 0.3, 0.4), _u(rng, 0.8, 1.8), CABINET, doors=1
        ))
    _add_wall_flat(layout, rng, OTHERPROP, _u(rng, 0.3, 0.6), _u(rng, 0.4, 0.7), 1.3, 0.05)  # towels
    if _chance(rng, 0.7):
        layout.place_on_wall(_trash_can(rng), margin=0.02)
    _add_clutter(layout, rng, int(rng.integers(0, 2)))


def _conference_room(layout: _Layout, rng) -> None:
    _add_door(layout, rng)
    if _chance(rng, 0.5):
        _add_door(layout, rng)
    for _ in range(int(rng.integers(0, 3))):
        _add_window(layout, rng, curtains=0.4)
    table = _table(rng, "conference")
    maker = _office_chair if _chance(rng, 0.6) else (_shell_chair if _chance(rng, 0.5) else _wooden_chair)
    ends = int(rng.integers(0, 2))
    cx, cy = layout.sx / 2, layout.sy / 2
    theta = 0.0 if layout.sx >= layout.sy else np.pi / 2
    for sides in ((1, ends, 1, ends), (1, 0, 1, 0), (1, 0, 0, 0), (0, 0, 0, 0)):
        group = _chairs_around(rng, table, maker, sides)
        if layout.place(
            group, cx + _u(rng, -0.2, 0.2), cy + _u(rng, -0.2, 0.2), theta + _u(rng, -0.05, 0.05),
            margin=0.05
        ):
            break
    else:
        layout.place_free(_table(rng, "dining"))
    _add_wall_flat(layout, rng, OTHERPROP, _u(rng, 1.5, 2.4), _u(rng, 0.9, 1.2), 1.4, 0.02)  # whiteboard
    if _chance(rng, 0.6):
        _add_wall_flat(layout, rng, OTHERPROP, _u(rng, 1.0, 1.6), 0.7, 1.5, 0.08)  # wall TV
    for _ in range(int(rng.integers(0, 3))):
        layout.place_on_wall(_cabinet_box(
            rng, _u(rng, 0.8, 1.6), _u(rng, 0.4, 0.5), _u(rng, 0.7, 0.9), CABINET,
            doors=int(rng.integers(2, 4))
        ))
    if _chance(rng, 0.25):
        layout.place_on_wall(_bookshelf(rng))
    if _chance(rng, 0.2):
        layout.place_on_wall(_sofa(rng))
    for _ in range(int(rng.integers(0, 4))):  # spare chairs along the walls
        layout.place_on_wall(maker(rng), margin=0.02, gap=_u(rng, 0.02, 0.2))
    _add_pictures(layout, rng, int(rng.integers(0, 3)))
    _add_clutter(layout, rng, int(rng.integers(1, 4)))


def _kitchen(layout: _Layout, rng) -> None:
    _add_door(layout, rng)
    if _chance(rng, 0.7):
        _add_window(layout, rng, curtains=0.3, radiator=0.2)
    # a counter run along a wall with the sink
    for _ in range(10):
        k = int(rng.integers(0, 4))
        length = layout.wall_frame(k)[3]
        run = min(_u(rng, 1.8, 3.2), length - 0.2)
        bw = _u(rng, 0.5, 0.8)
        counter = _counter_with_basin(
            rng, run, 0.6, _u(rng, 0.88, 0.92), bw, _u(rng, 0.38, 0.42), _u(rng, 0.16, 0.2),
            basin_x=_u(rng, -run / 2 + bw, run / 2 - bw), doors=max(2, int(run / 0.5))
        )
        _scatter_on(
            counter, (-run / 2 + 0.05, -0.25, -run / 2 + 0.6, 0.25), counter.bounds()[1][2], rng,
            int(rng.integers(1, 4))
        )
        counter = counter.centred()
        cw = counter.size[0]
        u = cw / 2 + 0.005 if _chance(rng, 0.5) else length - cw / 2 - 0.005
        if layout.blocks_window(k, u - run / 2, u + run / 2, 0.95):
            continue
        x, y, th = layout.wall_slot(counter, k, u, gap=0.005)
        if layout.place(counter, x, y, th, margin=0.02):
            if layout.height > 2.4 and not layout.blocks_window(k, u - run / 2, u + run / 2, 2.3):
                upper = _cabinet_box(rng, run, 0.35, 0.75, CABINET, doors=max(2, int(run / 0.5)), plinth=0.0).centred()
                ux, uy, uth = layout.wall_slot(upper, k, u, gap=0.0)
                meshes = [P.transform(m, P.rotation_z(uth), translation=(ux, uy, 1.45)) for m, _ in upper.parts]
                layout.parts.append((Mesh.concatenate(meshes), CABINET))
            break
    fridge = _cabinet_box(
        rng, _u(rng, 0.6, 0.8), _u(rng, 0.6, 0.7), _u(rng, 1.6, 1.9), OTHERFURNITURE, doors=1, plinth=0.02
    )
    layout.place_on_wall(fridge, margin=0.02)
    if _chance(rng, 0.85):
        table = _table(rng, "dining")
        maker = _wooden_chair if _chance(rng, 0.7) else _shell_chair
        group = _chairs_around(rng, table, maker, (1, 0, 1, int(rng.integers(0, 2))))
        if layout.place_free(group, margin=0.1, theta=float(rng.choice([0.0, np.pi / 2]))) is None:
            # pushed against a wall: chairs on the three free sides
            group = _chairs_around(rng, table, maker, (1, 1, 0, 1))
            if layout.place_on_wall(group.centred(), margin=0.05) is None:
                layout.place_free(table)
    if _chance(rng, 0.3):
        layout.place_on_wall(_cabinet_box(rng, _u(rng, 0.6, 1.2), 0.45, _u(rng, 0.8, 1.9), CABINET, doors=2))
    layout.place_on_wall(_trash_can(rng), margin=0.02)
    _add_pictures(layout, rng, int(rng.integers(0, 2)))
    _add_clutter(layout, rng, int(rng.integers(0, 3)))


_FURNISH = {
    "office": _office, "living_room": _living_room, "bedroom": _bedroom,
    "bathroom": _bathroom, "conference_room": _conference_room, "kitchen": _kitchen,
}
_SIZES = {  # (x range, y range) in metres
    "office": ((3.5, 6.5), (3.0, 5.5)), "living_room": ((4.0, 7.0), (3.5, 6.0)),
    "bedroom": ((3.2, 5.0), (3.0, 4.5)), "bathroom": ((2.3, 3.6), (2.0, 3.2)),
    "conference_room": ((4.5, 7.0), (3.5, 6.0)), "kitchen": ((3.3, 5.2), (3.0, 4.6)),
}


def make_room(rng: np.random.Generator, room_type: str | None = None) -> Room:
    """A furnished room of ``room_type`` (random type when None) built from ``rng``.

    Returns a Room whose parts are (Mesh in metres, NYU40 label). Raises ConfigError for
    an unknown room type.
    """
    if room_type is None:
        room_type = str(rng.choice(ROOM_TYPES))
    if room_type not in _FURNISH:
        raise ConfigError(f"unknown room type {room_type!r}; known: {', '.join(ROOM_TYPES)}")
    (x0, x1), (y0, y1) = _SIZES[room_type]
    sx, sy = _u(rng, x0, x1), _u(rng, y0, y1)
    if _chance(rng, 0.5):
        sx, sy = sy, sx
    height = _u(rng, 2.4, 3.0)
    layout = _Layout(sx, sy, height, rng)
    _FURNISH[room_type](layout, rng)
    furniture = layout.parts
    layout.parts = []
    layout.build_shell()
    return Room(parts=layout.parts + furniture, room_type=room_type, size=(sx, sy, height))
