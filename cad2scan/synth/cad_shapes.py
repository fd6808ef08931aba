"""A CAD-style model library in the spirit of ModelNet40, generated from a seed.

Each class has a parametric builder with random proportions and optional parts, so
models of one class vary (leg layouts, backrests, bases, drawers...). Models are clean,
closed, sharp-edged part assemblies: the style of a CAD repository, deliberately unlike
the cluttered, cushioned, partially scanned objects of :mod:`cad2scan.synth.rooms`.

Builders work in metres (z up, front towards -y, standing on z = 0, centred in x/y);
:func:`make_cad_model` then rotates the model about z by a random azimuth and scales it
by a random arbitrary unit factor, like ModelNet files (arbitrary units and azimuth).
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from cad2scan.errors import UnknownClassError
from cad2scan.geometry.mesh import Mesh
from cad2scan.synth import primitives as P
from cad2scan.synth.cad_negatives import NEGATIVE_BUILDERS
from cad2scan.synth.randparts import chance as _chance
from cad2scan.synth.randparts import rotate_about as _about
from cad2scan.synth.randparts import uniform as _u
from cad2scan.synth.randparts import upright_post as _leg

TARGET_CLASSES = (
    "bathtub", "bed", "bookshelf", "chair", "curtain", "desk",
    "door", "sink", "sofa", "table", "toilet",
)
# Non-target ModelNet40 classes, the only source of the background class in training.
# The first seven are built here; the rest come from cad2scan.synth.cad_negatives.
NEGATIVE_CLASSES = ("lamp", "monitor", "plant", "bottle", "vase", "night_stand", "wardrobe") + tuple(
    NEGATIVE_BUILDERS
)
ALL_CLASSES = TARGET_CLASSES + NEGATIVE_CLASSES

UNIT_SCALE_RANGE = (10.0, 50.0)


# ------------------------------------------------------------------ seating


def _chair(rng: np.random.Generator) -> list[Mesh]:
    w, d = _u(rng, 0.40, 0.56), _u(rng, 0.40, 0.55)
    seat_h, seat_t = _u(rng, 0.40, 0.48), _u(rng, 0.025, 0.08)
    parts = [P.box([-w / 2, -d / 2, seat_h - seat_t], [w / 2, d / 2, seat_h])]
    under = seat_h - seat_t
    base = rng.choice(["legs", "legs", "sled", "pedestal", "block"])
    if base == "legs":
        t, inset, splay = _u(rng, 0.025, 0.05), _u(rng, 0.01, 0.05), _u(rng, 0.0, 0.05)
        round_legs = _chance(rng, 0.4)
        for sx in (-1, 1):
            for sy in (-1, 1):
                top = (sx * (w / 2 - inset - t / 2), sy * (d / 2 - inset - t / 2), under)
                foot = (top[0] + sx * splay, top[1] + sy * splay, 0.0)
                parts.append(
                    P.cylinder_between(foot, top, t / 2, 10) if round_legs else P.beam(foot, top, t)
                )
        if _chance(rng, 0.4):  # H stretchers
            z = _u(rng, 0.08, 0.2)
            for sx in (-1, 1):
                x = sx * (w / 2 - inset - t / 2 + splay * (1 - z / under))
                parts.append(P.box([x - t / 4, -d / 2 + inset, z], [x + t / 4, d / 2 - inset, z + t / 2]))
    elif base == "sled":
        r = _u(rng, 0.01, 0.02)
        for sx in (-1, 1):
            x = sx * (w / 2 - 0.03)
            f, b = (x, -d / 2 + 0.02, r), (x, d / 2 - 0.02, r)
            parts += [
                P.cylinder_between(f, b, r, 8),
                P.cylinder_between(f, (x, -d / 2 + 0.04, under), r, 8),
                P.cylinder_between(b, (x, d / 2 - 0.04, under), r, 8),
            ]
    elif base == "pedestal":
        pole_r = _u(rng, 0.02, 0.04)
        foot_z = _u(rng, 0.05, 0.09)
        parts.append(P.cylinder(pole_r, under - foot_z, 12, base=(0, 0, foot_z)))
        if _chance(rng, 0.75):
            n_arms, reach = int(rng.choice([4, 5, 5])), _u(rng, 0.25, 0.33)
            phase = _u(rng, 0, 2 * np.pi)
            for k in range(n_arms):
                a = phase + 2 * np.pi * k / n_arms
                end = (reach * np.cos(a), reach * np.sin(a), foot_z - 0.01)
                parts.append(P.beam((0, 0, foot_z), end, 0.035))
                parts.append(P.sphere(0.025, 8, 4, center=(end[0], end[1], 0.025)))
        else:
            parts.append(P.cylinder(_u(rng, 0.2, 0.28), foot_z, 20))
    else:  # block
        inset = _u(rng, 0.0, 0.04)
        parts.append(P.box([-w / 2 + inset, -d / 2 + inset, 0], [w / 2 - inset, d / 2 - inset, under]))

    back_h, back_t, tilt = _u(rng, 0.30, 0.55), _u(rng, 0.02, 0.06), _u(rng, 0.0, 0.25)
    y0 = d / 2 - back_t
    style = rng.choice(["solid", "slats", "bars", "frame"])
    back: list[Mesh] = []
    if style == "solid":
        back.append(P.box([-w / 2, y0, seat_h], [w / 2, d / 2, seat_h + back_h]))
    else:
        post = _u(rng, 0.025, 0.045)
        for sx in (-1, 1):
            x = sx * (w / 2 - post / 2)
            back.append(P.box([x - post / 2, y0, seat_h], [x + post / 2, d / 2, seat_h + back_h]))
        rail = _u(rng, 0.04, 0.1)
        back.append(P.box([-w / 2, y0, seat_h + back_h - rail], [w / 2, d / 2, seat_h + back_h]))
        inner = w - 2 * post
        if style == "slats":
            n = int(rng.integers(2, 7))
            sw = inner / (2 * n + 1)
            for k in range(n):
                x0 = -inner / 2 + sw * (2 * k + 1)
                back.append(P.box([x0, y0 + back_t * 0.25, seat_h], [x0 + sw, d / 2 - back_t * 0.25, seat_h + back_h]))
        elif style == "bars":
            for k in range(int(rng.integers(1, 4))):
                z = seat_h + 0.06 + k * 0.1
                back.append(P.box([-inner / 2, y0, z], [inner / 2, d / 2, z + 0.03]))
        else:  # frame with a padded panel
            z0 = seat_h + _u(rng, 0.05, 0.15)
            back.append(P.box([-inner / 2, y0, z0], [inner / 2, d / 2, seat_h + back_h - rail]))
    parts += [_about(m, (0, d / 2, seat_h), P.rotation_x(-tilt)) for m in back]

    if _chance(rng, 0.4):
        arm_z, arm_w = seat_h + _u(rng, 0.17, 0.26), _u(rng, 0.04, 0.08)
        for sx in (-1, 1):
            x = sx * (w / 2 + arm_w / 2 - 0.01)
            parts.append(P.box([x - arm_w / 2, -d / 2 + 0.05, arm_z - 0.03], [x + arm_w / 2, d / 2, arm_z]))
            if base == "block" and _chance(rng, 0.6):
                parts.append(P.box([x - arm_w / 2, -d / 2 + 0.05, 0], [x + arm_w / 2, d / 2, arm_z]))
            else:
                parts.append(P.box([x - 0.015, -d / 2 + 0.07, seat_h - 0.02], [x + 0.015, -d / 2 + 0.1, arm_z]))
    return parts


def _sofa(rng: np.random.Generator) -> list[Mesh]:
    length, depth = _u(rng, 1.5, 2.4), _u(rng, 0.8, 1.0)
    seat_h = _u(rng, 0.38, 0.46)
    leg_h = _u(rng, 0.04, 0.15) if _chance(rng, 0.5) else 0.0
    arm_style = rng.choice(["none", "box", "box", "rolled"])
    arm_w = 0.0 if arm_style == "none" else _u(rng, 0.1, 0.25)
    arm_h = _u(rng, 0.55, 0.7)
    back_t, back_h = _u(rng, 0.15, 0.3), _u(rng, 0.75, 0.95)
    cushion_t = _u(rng, 0.08, 0.18)
    base_top = seat_h - cushion_t
    parts = [P.box([-length / 2, -depth / 2, leg_h], [length / 2, depth / 2, base_top])]
    parts.append(P.box([-length / 2, depth / 2 - back_t, leg_h], [length / 2, depth / 2, back_h]))
    if leg_h > 0:
        for sx in (-1, 1):
            for sy in (-1, 1):
                parts.append(_leg(True, sx * (length / 2 - 0.06), sy * (depth / 2 - 0.06), 0, leg_h + 0.01, 0.04))
    for sx in (-1, 1):
        if arm_style == "none":
            continue
        x0, x1 = sorted((sx * length / 2, sx * (length / 2 - arm_w)))
        parts.append(P.box([x0, -depth / 2, leg_h], [x1, depth / 2, arm_h]))
        if arm_style == "rolled":
            xc = (x0 + x1) / 2
            parts.append(P.cylinder_between((xc, -depth / 2, arm_h), (xc, depth / 2, arm_h), arm_w * 0.6, 12))
    inner = length - 2 * arm_w
    n = int(rng.integers(1, 4))
    cw = inner / n
    for k in range(n):
        x0 = -inner / 2 + k * cw
        parts.append(P.box([x0 + 0.005, -depth / 2, base_top], [x0 + cw - 0.005, depth / 2 - back_t, seat_h]))
        if _chance(rng, 0.5):
            parts.append(P.box(
                [x0 + 0.01, depth / 2 - back_t - 0.15, seat_h],
                [x0 + cw - 0.01, depth / 2 - back_t, back_h - 0.05]
            ))
    if _chance(rng, 0.2):  # chaise on one end (L shape)
        ext, sx = _u(rng, 0.5, 0.8), rng.choice([-1, 1])
        x0, x1 = sorted((sx * (length / 2 - arm_w), sx * (length / 2 - arm_w - _u(rng, 0.6, 0.8))))
        parts.append(P.box([x0, -depth / 2 - ext, leg_h], [x1, -depth / 2 + 0.01, seat_h]))
    return parts


# ------------------------------------------------------------------ tables and desks


def _table(rng: np.random.Generator) -> list[Mesh]:
    coffee = _chance(rng, 0.2)
    height = _u(rng, 0.38, 0.5) if coffee else _u(rng, 0.70, 0.78)
    top_t = _u(rng, 0.02, 0.06)
    shape = rng.choice(["rect", "rect", "rect", "round", "oval"])
    under = height - top_t
    parts: list[Mesh] = []
    if shape == "rect":
        length = _u(rng, 0.8, 2.0)
        width = _u(rng, 0.6, min(1.0, length))
        parts.append(P.box([-length / 2, -width / 2, under], [length / 2, width / 2, height]))
        base = rng.choice([
            "legs", "legs", "legs", "trestle", "pedestal"
        ] if length < 1.3 else ["legs", "legs", "trestle"])
    else:
        r = _u(rng, 0.35, 0.65)
        sy = 1.0 if shape == "round" else _u(rng, 0.55, 0.8)
        parts.append(P.transform(P.cylinder(r, top_t, 28, base=(0, 0, under)), scale=(1, sy, 1)))
        length, width = 2 * r, 2 * r * sy
        base = rng.choice(["pedestal", "pedestal", "legs"])
    if base == "legs":
        t, inset = _u(rng, 0.03, 0.07), _u(rng, 0.02, 0.12)
        round_legs = _chance(rng, 0.4)
        if shape == "rect":
            corners = [(
                sx * (length / 2 - inset - t / 2), sy * (width / 2 - inset - t / 2)
            ) for sx in (-1, 1) for sy in (-1, 1)]
        else:
            n = int(rng.choice([3, 4]))
            corners = [(
                (length / 2 - inset - t) * np.cos(2 * np.pi * k / n),
                (width / 2 - inset - t) * np.sin(2 * np.pi * k / n)
            ) for k in range(n)]
        parts += [_leg(round_legs, x, y, 0.0, under, t) for x, y in corners]
        if shape == "rect" and _chance(rng, 0.5):  # apron
            a = _u(rng, 0.06, 0.12)
            x, y = length / 2 - inset - t / 2, width / 2 - inset - t / 2
            parts += [
                P.box([-x, -y - 0.01, under - a], [x, -y + 0.01, under]),
                P.box([-x, y - 0.01, under - a], [x, y + 0.01, under]),
                P.box([-x - 0.01, -y, under - a], [-x + 0.01, y, under]),
                P.box([x - 0.01, -y, under - a], [x + 0.01, y, under]),
            ]
        if shape == "rect" and _chance(rng, 0.25):  # lower shelf
            z = _u(rng, 0.08, 0.2)
            x, y = length / 2 - inset, width / 2 - inset
            parts.append(P.box([-x, -y, z], [x, y, z + 0.02]))
    elif base == "pedestal":
        pole_r = _u(rng, 0.04, 0.1)
        parts.append(P.cylinder(pole_r, under, 16))
        if _chance(rng, 0.6):
            parts.append(P.cylinder(_u(rng, 0.2, min(0.4, length / 2)), _u(rng, 0.02, 0.05), 24))
        else:
            reach = _u(rng, 0.25, min(0.45, length / 2))
            parts += [P.box([-reach, -0.03, 0], [reach, 0.03, 0.05]), P.box([-0.03, -reach, 0], [0.03, reach, 0.05])]
    else:  # trestle
        px = length / 2 - _u(rng, 0.1, 0.25)
        for sx in (-1, 1):
            x = sx * px
            parts.append(P.box([x - 0.03, -width * 0.3, 0.05], [x + 0.03, width * 0.3, under]))
            parts.append(P.box([x - 0.04, -width * 0.42, 0], [x + 0.04, width * 0.42, 0.06]))
        stretcher_top = 0.5 * under  # bottom kept below the top, so the bar is never inside out
        parts.append(P.box([-px, -0.03, min(_u(rng, 0.15, 0.4), stretcher_top - 0.04)], [px, 0.03, stretcher_top]))
    return parts


def _drawer_stack(x0, x1, y_front, z0, z1, n, rng) -> list[Mesh]:
    """Drawer fronts (thin boxes) with handles on the front face y = y_front (facing -y)."""
    parts = []
    hgt = (z1 - z0) / n
    knob = rng.choice(["bar", "knob"])
    for k in range(n):
        a, b = z0 + k * hgt + 0.005, z0 + (k + 1) * hgt - 0.005
        parts.append(P.box([x0 + 0.01, y_front - 0.015, a], [x1 - 0.01, y_front + 0.001, b]))
        zc, xc = (a + b) / 2, (x0 + x1) / 2
        if knob == "bar":
            parts.append(P.box([xc - 0.06, y_front - 0.035, zc - 0.008], [xc + 0.06, y_front - 0.014, zc + 0.008]))
        else:
            parts.append(P.sphere(0.015, 8, 4, center=(xc, y_front - 0.025, zc)))
    return parts


def _desk(rng: np.random.Generator) -> list[Mesh]:
    length, depth = _u(rng, 1.0, 1.7), _u(rng, 0.55, 0.8)
    height, top_t = _u(rng, 0.72, 0.77), _u(rng, 0.02, 0.04)
    under = height - top_t
    parts = [P.box([-length / 2, -depth / 2, under], [length / 2, depth / 2, height])]
    layout = rng.choice(["two_pedestals", "pedestal_panel", "panels", "pedestal_legs"])
    ped_w = _u(rng, 0.35, 0.45)

    def pedestal(side: int) -> list[Mesh]:
        x0, x1 = sorted((side * length / 2, side * (length / 2 - ped_w)))
        out = [P.box([x0, -depth / 2 + 0.02, 0], [x1, depth / 2, under])]
        out += _drawer_stack(x0, x1, -depth / 2 + 0.02, 0.06, under - 0.02, int(rng.integers(2, 5)), rng)
        return out

    def panel(side: int) -> list[Mesh]:
        t = _u(rng, 0.025, 0.04)
        x0, x1 = sorted((side * length / 2, side * (length / 2 - t)))
        return [P.box([x0, -depth / 2, 0], [x1, depth / 2, under])]

    def legs(side: int) -> list[Mesh]:
        x = side * (length / 2 - 0.04)
        return [_leg(False, x, sy * (depth / 2 - 0.04), 0, under, 0.04) for sy in (-1, 1)]

    left, right = {
        "two_pedestals": (pedestal, pedestal),
        "pedestal_panel": (pedestal, panel),
        "panels": (panel, panel),
        "pedestal_legs": (pedestal, legs),
    }[layout]
    if _chance(rng, 0.5):
        left, right = right, left
    parts += left(-1) + right(1)
    if _chance(rng, 0.7):  # modesty panel
        parts.append(P.box(
            [-length / 2 + 0.02, depth / 2 - 0.03, under - _u(rng, 0.3, 0.5)],
            [length / 2 - 0.02, depth / 2 - 0.01, under]
        ))
    if _chance(rng, 0.3):  # drawer under the top (centre)
        parts.append(P.box([-0.3, -depth / 2 + 0.02, under - 0.08], [0.3, depth / 2 - 0.05, under]))
    if _chance(rng, 0.25):  # hutch
        hh = _u(rng, 0.3, 0.6)
        hd = _u(rng, 0.2, 0.3)
        parts += [
            P.box([-length / 2, depth / 2 - hd, height], [-length / 2 + 0.02, depth / 2, height + hh]),
            P.box([length / 2 - 0.02, depth / 2 - hd, height], [length / 2, depth / 2, height + hh]),
            P.box([-length / 2, depth / 2 - hd, height + hh - 0.02], [length / 2, depth / 2, height + hh]),
            P.box([-length / 2, depth / 2 - 0.01, height], [length / 2, depth / 2, height + hh]),
        ]
    if _chance(rng, 0.15):  # L return
        rw = _u(rng, 0.45, 0.6)
        sx = rng.choice([-1, 1])
        x0, x1 = sorted((sx * length / 2, sx * (length / 2 - rw)))
        parts.append(P.box([x0, -depth / 2 - _u(rng, 0.6, 1.0), under], [x1, -depth / 2 + 0.01, height]))
        parts.append(P.box([x0, -depth / 2 - 0.6, 0], [x0 + 0.03, -depth / 2 - 0.55, under]))
    return parts


# ------------------------------------------------------------------ bedroom and storage


def _bed(rng: np.random.Generator) -> list[Mesh]:
    length = _u(rng, 1.9, 2.2)
    width = _u(rng, 0.9, 1.2) if _chance(rng, 0.35) else _u(rng, 1.35, 1.9)
    leg_h = _u(rng, 0.05, 0.2) if _chance(rng, 0.5) else 0.0
    frame_top = leg_h + _u(rng, 0.15, 0.35)
    mat_t = _u(rng, 0.15, 0.3)
    hb_t = _u(rng, 0.04, 0.1)
    y_head = length / 2
    parts = [P.box([-width / 2, -length / 2, leg_h], [width / 2, y_head - hb_t, frame_top])]
    parts.append(P.box(
        [-width / 2 + 0.02, -length / 2 + 0.02, frame_top],
        [width / 2 - 0.02, y_head - hb_t, frame_top + mat_t]
    ))
    if leg_h > 0:
        for sx in (-1, 1):
            for sy in (-1, 1):
                parts.append(_leg(False, sx * (width / 2 - 0.05), sy * (length / 2 - 0.05), 0, leg_h + 0.01, 0.06))
    hb_h = _u(rng, 0.8, 1.3)
    style = rng.choice(["solid", "solid", "slats", "posts"])
    if style == "solid":
        parts.append(P.box([-width / 2 - 0.02, y_head - hb_t, 0], [width / 2 + 0.02, y_head, hb_h]))
    else:
        post = _u(rng, 0.05, 0.09)
        post_h = hb_h if style == "slats" else _u(rng, 1.6, 2.1)
        for sx in (-1, 1):
            for y in ((y_head - post, y_head),) + (((-length / 2, -length / 2 + post),) if style == "posts" else ()):
                x0, x1 = sorted((sx * (width / 2 + 0.02), sx * (width / 2 + 0.02 - post)))
                parts.append(P.box([x0, y[0], 0], [x1, y[1], post_h]))
        parts.append(P.box([-width / 2, y_head - hb_t, hb_h - 0.08], [width / 2, y_head, hb_h]))
        n = int(rng.integers(3, 9))
        for k in range(n):
            x = -width / 2 + (k + 0.5) * width / n
            parts.append(P.box(
                [x - 0.02, y_head - hb_t * 0.7, frame_top], [x + 0.02, y_head - hb_t * 0.3, hb_h - 0.08]
            ))
        if style == "posts" and _chance(rng, 0.6):  # canopy rails
            for sx in (-1, 1):
                x = sx * (width / 2 + 0.02 - post / 2)
                parts.append(P.box([x - 0.02, -length / 2, post_h - 0.05], [x + 0.02, y_head, post_h]))
    if _chance(rng, 0.5):  # footboard
        fb_h = _u(rng, 0.4, 0.7)
        parts.append(P.box([-width / 2 - 0.02, -length / 2 - 0.05, 0], [width / 2 + 0.02, -length / 2 + 0.01, fb_h]))
    if _chance(rng, 0.5):  # simple pillows
        n = 1 if width < 1.3 else 2
        for k in range(n):
            xc = -width / 2 + (k + 0.5) * width / n
            parts.append(P.ellipsoid(
                (width / n * 0.4, 0.2, 0.07), 12, 6,
                center=(xc, y_head - hb_t - 0.28, frame_top + mat_t + 0.04)
            ))
    return parts


def _bookshelf(rng: np.random.Generator) -> list[Mesh]:
    width, depth, height = _u(rng, 0.6, 1.4), _u(rng, 0.25, 0.4), _u(rng, 0.8, 2.2)
    t = _u(rng, 0.015, 0.03)
    plinth = _u(rng, 0.0, 0.1)
    parts = [
        P.box([-width / 2, -depth / 2, 0], [-width / 2 + t, depth / 2, height]),
        P.box([width / 2 - t, -depth / 2, 0], [width / 2, depth / 2, height]),
        P.box([-width / 2, -depth / 2, height - t], [width / 2, depth / 2, height]),
        P.box([-width / 2 + t, -depth / 2, plinth], [width / 2 - t, depth / 2, plinth + t]),
    ]
    if plinth > 0.02:
        parts.append(P.box([-width / 2 + t, -depth / 2 + 0.01, 0], [width / 2 - t, -depth / 2 + 0.03, plinth]))
    if _chance(rng, 0.7):
        parts.append(P.box([-width / 2 + t, depth / 2 - 0.008, plinth], [width / 2 - t, depth / 2, height - t]))
    n_gaps = max(2, int(round((height - plinth) / _u(rng, 0.25, 0.4))))
    levels = plinth + (height - plinth - t) * np.arange(1, n_gaps) / n_gaps
    for z in levels:
        parts.append(P.box([-width / 2 + t, -depth / 2, z], [width / 2 - t, depth / 2 - 0.008, z + t]))
    if width > 1.0 and _chance(rng, 0.4):
        parts.append(P.box([-t / 2, -depth / 2, plinth], [t / 2, depth / 2, height - t]))
    if _chance(rng, 0.25):  # a few books
        for z in np.concatenate([[plinth], levels])[: int(rng.integers(1, n_gaps + 1))]:
            x = -width / 2 + t + 0.01
            while x < width / 2 - t - 0.05 and _chance(rng, 0.95):
                bw, bh = _u(rng, 0.02, 0.05), _u(rng, 0.15, 0.24)
                parts.append(P.box(
                    [x, -depth / 2 + 0.03, z + t],
                    [x + bw, depth / 2 - 0.03, z + t + min(bh, (height - plinth) / n_gaps - t - 0.02)]
                ))
                x += bw + 0.002
    return parts


def _night_stand(rng: np.random.Generator) -> list[Mesh]:
    w, d, h = _u(rng, 0.4, 0.6), _u(rng, 0.35, 0.45), _u(rng, 0.45, 0.65)
    leg_h = _u(rng, 0.08, 0.18) if _chance(rng, 0.4) else 0.0
    parts = [
        P.box([-w / 2, -d / 2, leg_h], [w / 2, d / 2, h - 0.02]),
        P.box([-w / 2 - 0.01, -d / 2 - 0.01, h - 0.02], [w / 2 + 0.01, d / 2 + 0.01, h])
    ]
    if leg_h:
        parts += [_leg(
            False, sx * (w / 2 - 0.03), sy * (d / 2 - 0.03), 0, leg_h + 0.01, 0.04
        ) for sx in (-1, 1) for sy in (-1, 1)]
    parts += _drawer_stack(-w / 2, w / 2, -d / 2, leg_h + 0.02, h - 0.04, int(rng.integers(1, 4)), rng)
    return parts


def _wardrobe(rng: np.random.Generator) -> list[Mesh]:
    w, d, h = _u(rng, 0.8, 1.8), _u(rng, 0.5, 0.65), _u(rng, 1.8, 2.2)
    parts = [
        P.box([-w / 2, -d / 2, 0.08], [w / 2, d / 2, h]),
        P.box([-w / 2 + 0.03, -d / 2 + 0.03, 0], [w / 2 - 0.03, d / 2 - 0.03, 0.08])
    ]
    if _chance(rng, 0.5):
        parts.append(P.box([-w / 2 - 0.03, -d / 2 - 0.03, h], [w / 2 + 0.03, d / 2 + 0.03, h + 0.05]))
    n = int(rng.integers(2, 4))
    dw = w / n
    for k in range(n):
        x0 = -w / 2 + k * dw
        parts.append(P.box([x0 + 0.005, -d / 2 - 0.015, 0.1], [x0 + dw - 0.005, -d / 2 + 0.001, h - 0.02]))
        hx = x0 + (dw - 0.05 if k % 2 == 0 else 0.05)
        parts.append(P.box([hx - 0.01, -d / 2 - 0.04, h * 0.45], [hx + 0.01, -d / 2 - 0.014, h * 0.45 + 0.2]))
    return parts


# ------------------------------------------------------------------ bathroom


def _basin_profile(r_top: float, r_bottom: float, depth: float, wall: float, z0: float = 0.0):
    """Counter-clockwise (r, z) loop of an open-top cup: outer wall up, inner wall down."""
    return [
        (0.0, z0), (r_bottom, z0), (r_top, z0 + depth), (r_top - wall, z0 + depth),
        (max(r_bottom - wall, wall), z0 + wall), (0.0, z0 + wall),
    ]


def _rect_basin(lx: float, ly: float, depth: float, wall: float, z0: float = 0.0) -> list[Mesh]:
    """Open-top rectangular basin as a bottom slab and four walls (centred in x/y)."""
    x, y = lx / 2, ly / 2
    return [
        P.box([-x, -y, z0], [x, y, z0 + wall]),
        P.box([-x, -y, z0], [-x + wall, y, z0 + depth]),
        P.box([x - wall, -y, z0], [x, y, z0 + depth]),
        P.box([-x, -y, z0], [x, -y + wall, z0 + depth]),
        P.box([-x, y - wall, z0], [x, y, z0 + depth]),
    ]


def _faucet(x: float, y: float, z: float, toward: float, rng) -> list[Mesh]:
    """A tap standing at (x, y, z) whose spout reaches ``toward`` metres along -y (or +y)."""
    h = _u(rng, 0.1, 0.25)
    r = _u(rng, 0.012, 0.02)
    return [
        P.cylinder(r, h, 10, base=(x, y, z)),
        P.cylinder_between((x, y, z + h - r), (x, y + toward, z + h - r), r * 0.8, 8),
    ]


def _bathtub(rng: np.random.Generator) -> list[Mesh]:
    length, width, height = _u(rng, 1.4, 1.8), _u(rng, 0.7, 0.85), _u(rng, 0.45, 0.6)
    wall = _u(rng, 0.06, 0.12)
    parts: list[Mesh] = []
    if _chance(rng, 0.6):
        parts += _rect_basin(length, width, height, wall)
        if _chance(rng, 0.4):  # rim
            parts += _rect_basin(length + 0.06, width + 0.06, 0.03, 0.05, z0=height - 0.03)[1:]
    else:
        feet = _chance(rng, 0.6)
        z0 = _u(rng, 0.08, 0.15) if feet else 0.0
        r = 0.5
        prof = _basin_profile(r, r * _u(rng, 0.65, 0.85), height - z0, wall / (length / 2) * r, z0)
        parts.append(P.transform(P.revolve(prof, 24), scale=(length / 2 / r, width / 2 / r, 1.0)))
        if feet:
            for sx in (-1, 1):
                for sy in (-1, 1):
                    parts.append(P.frustum(0.03, 0.05, z0 + 0.03, 8, base=(sx * length * 0.3, sy * width * 0.25, 0)))
    if _chance(rng, 0.5):
        parts += _faucet(length / 2 - 0.08, 0.0, height, -0.12, rng)
    return parts


def _sink(rng: np.random.Generator) -> list[Mesh]:
    bw, bd = _u(rng, 0.4, 0.65), _u(rng, 0.35, 0.5)
    bdepth = _u(rng, 0.12, 0.2)
    top = _u(rng, 0.8, 0.9)
    mount = rng.choice(["pedestal", "cabinet", "wall", "basin"])
    parts: list[Mesh] = []
    if mount == "cabinet":
        cw, cd = _u(rng, max(0.5, bw + 0.05), 1.0), _u(rng, 0.45, 0.55)
        ct = top - bdepth * 0.3
        parts += [
            P.box([-cw / 2, -cd / 2, 0.08], [cw / 2, cd / 2, ct - 0.03]),
            P.box([-cw / 2 + 0.03, -cd / 2 + 0.05, 0], [cw / 2 - 0.03, cd / 2, 0.08])
        ]
        parts.append(P.box([-cw / 2 - 0.01, -cd / 2 - 0.02, ct - 0.03], [cw / 2 + 0.01, cd / 2, ct]))
        for sx in (-1, 1):
            x0, x1 = sorted((0.0, sx * (cw / 2 - 0.01)))
            parts.append(P.box([x0 + 0.005, -cd / 2 - 0.015, 0.1], [x1 - 0.005, -cd / 2 + 0.001, ct - 0.05]))
        z_basin = ct - bdepth * 0.7
        by = -0.02
    elif mount == "basin":  # drop-in / vessel basin on a short slab of counter
        z_basin, by = 0.03, 0.0
        if _chance(rng, 0.6):
            parts.append(P.box([-bw / 2 - 0.08, -bd / 2 - 0.05, 0.0], [bw / 2 + 0.08, bd / 2 + 0.08, 0.03]))
    else:
        z_basin = top - bdepth
        by = 0.0
        if mount == "pedestal":
            parts.append(P.frustum(_u(rng, 0.1, 0.15), _u(rng, 0.06, 0.1), z_basin + 0.02, 16))
        else:
            for sx in (-1, 1):
                parts.append(P.box(
                    [sx * bw / 4 - 0.015, bd / 2 - 0.15, z_basin - 0.15],
                    [sx * bw / 4 + 0.015, bd / 2, z_basin + 0.01]
                ))
    if _chance(rng, 0.5):
        parts += [P.transform(m, translation=(0, by, 0)) for m in _rect_basin(bw, bd, bdepth, 0.03, z0=z_basin)]
    else:
        r = 0.5
        prof = _basin_profile(r, r * _u(rng, 0.5, 0.8), bdepth, 0.03 / (bw / 2) * r, z_basin)
        parts.append(P.transform(P.revolve(prof, 20), scale=(bw / 2 / r, bd / 2 / r, 1.0), translation=(0, by, 0)))
    parts += _faucet(0.0, by + bd / 2 - 0.04, z_basin + bdepth, -_u(rng, 0.08, 0.15), rng)
    return parts


def _toilet(rng: np.random.Generator) -> list[Mesh]:
    bowl_h = _u(rng, 0.36, 0.42)
    r = _u(rng, 0.17, 0.21)
    elong = _u(rng, 1.2, 1.45)
    foot = _u(rng, 0.09, 0.13)
    profile = [
        (0.0, 0.0), (foot, 0.0), (foot * 1.05, bowl_h * 0.35), (r * 0.85, bowl_h * 0.7), (r, bowl_h),
        (0.0, bowl_h)
    ]
    by = -_u(rng, 0.08, 0.14)
    parts = [P.transform(P.revolve(profile, 20), scale=(1, elong, 1), translation=(0, by, 0))]
    seat_t = _u(rng, 0.02, 0.04)
    seat = P.revolve_loop([(r * 0.6, 0), (r * 1.02, 0), (r * 1.02, seat_t), (r * 0.6, seat_t)], 20)
    parts.append(P.transform(seat, scale=(1, elong, 1), translation=(0, by, bowl_h)))
    lid = rng.choice(["none", "closed", "open"])
    if lid == "closed":
        parts.append(P.transform(P.cylinder(r, 0.02, 20), scale=(1, elong, 1), translation=(0, by, bowl_h + seat_t)))
    tank_w, tank_d, tank_h = _u(rng, 0.35, 0.5), _u(rng, 0.15, 0.22), _u(rng, 0.3, 0.4)
    y_back = by + r * elong + tank_d * 0.6
    tz = bowl_h + _u(rng, -0.02, 0.05)
    if _chance(rng, 0.85):
        parts.append(P.box([-tank_w / 2, y_back - tank_d, tz], [tank_w / 2, y_back, tz + tank_h]))
        parts.append(P.box(
            [-tank_w / 2 - 0.01, y_back - tank_d - 0.01, tz + tank_h],
            [tank_w / 2 + 0.01, y_back + 0.01, tz + tank_h + 0.03]
        ))
        parts.append(P.box(
            [-tank_w / 2 + 0.03, y_back - tank_d - 0.02, tz + tank_h - 0.08],
            [-tank_w / 2 + 0.08, y_back - tank_d, tz + tank_h - 0.06]
        ))
        neck_y = by + r * elong - 0.05  # bowl-to-tank neck; never inverted (deep tanks overlap the bowl)
        parts.append(P.box([-0.08, neck_y, 0.05], [0.08, max(y_back - tank_d + 0.01, neck_y + 0.03), tz + 0.02]))
    else:  # low connector to a wall (tank hidden)
        parts.append(P.box([-0.12, by + r * elong - 0.05, 0.0], [0.12, y_back, bowl_h]))
    if lid == "open":
        ty = y_back - tank_d - 0.03
        parts.append(P.transform(
            P.cylinder(r, 0.02, 20), P.rotation_x(np.pi / 2 - 0.15), scale=(1, elong, 1),
            translation=(0, ty, bowl_h + r * elong)
        ))
    return parts


# ------------------------------------------------------------------ openings and textiles


def _door(rng: np.random.Generator) -> list[Mesh]:
    w, h, t = _u(rng, 0.75, 1.0), _u(rng, 1.95, 2.15), _u(rng, 0.035, 0.05)
    double = _chance(rng, 0.15)
    if double:
        w *= 1.6
    parts: list[Mesh] = []
    leaves = [(-w / 2, 0.0), (0.0, w / 2)] if double else [(-w / 2, w / 2)]
    style = rng.choice(["flat", "raised", "glazed"])
    for x0, x1 in leaves:
        if style == "glazed":
            s = _u(rng, 0.08, 0.14)
            parts += [
                P.box([x0, -t / 2, 0], [x0 + s, t / 2, h]), P.box([x1 - s, -t / 2, 0], [x1, t / 2, h]),
                P.box([x0, -t / 2, 0], [x1, t / 2, _u(rng, 0.2, 0.9)]), P.box([x0, -t / 2, h - s], [x1, t / 2, h]),
                P.box([x0 + s, -0.004, 0], [x1 - s, 0.004, h - s]),
            ]
        else:
            parts.append(P.box([x0, -t / 2, 0], [x1, t / 2, h]))
        if style == "raised":
            rows = int(rng.integers(1, 4))
            cols = 1 if (x1 - x0) < 0.5 else int(rng.integers(1, 3))
            m = 0.1
            pw, ph = (x1 - x0 - m * (cols + 1)) / cols, (h - m * (rows + 1)) / rows
            for i in range(cols):
                for j in range(rows):
                    px, pz = x0 + m + i * (pw + m), m + j * (ph + m)
                    for side in (-1, 1):
                        y0, y1 = sorted((side * t / 2, side * (t / 2 + 0.01)))
                        parts.append(P.box([px, y0, pz], [px + pw, y1, pz + ph]))
        hx = x1 - 0.07 if (not double or x0 < 0) else x0 + 0.07  # handles meet in the middle
        zc = _u(rng, 0.95, 1.05)
        for side in (-1, 1):
            if _chance(rng, 0.5):
                parts.append(P.sphere(0.03, 10, 5, center=(hx, side * (t / 2 + 0.05), zc)))
                parts.append(P.cylinder_between((hx, 0, zc), (hx, side * (t / 2 + 0.04), zc), 0.01, 8))
            else:
                parts.append(P.cylinder_between((hx, 0, zc), (hx, side * (t / 2 + 0.05), zc), 0.01, 8))
                tip = hx - 0.12 if hx > (x0 + x1) / 2 else hx + 0.12
                parts.append(P.cylinder_between(
                    (hx, side * (t / 2 + 0.05), zc), (tip, side * (t / 2 + 0.05), zc), 0.01, 8
                ))
    if _chance(rng, 0.7):  # frame (jambs and head)
        fw, fd = _u(rng, 0.04, 0.08), _u(rng, 0.1, 0.15)
        parts += [
            P.box([-w / 2 - fw, -fd / 2, 0], [-w / 2, fd / 2, h + fw]),
            P.box([w / 2, -fd / 2, 0], [w / 2 + fw, fd / 2, h + fw]),
            P.box([-w / 2, -fd / 2, h], [w / 2, fd / 2, h + fw]),
        ]
    return parts


def wavy_curtain(
    rng: np.random.Generator, width: float, height: float, amplitude: float, fold: float,
    thickness: float = 0.01, x0: float = 0.0, z0: float = 0.0, flare: float = 0.0,
) -> Mesh:
    """A hanging curtain panel: a closed thin sheet in the x-z plane with folds along y.

    width, height: panel extent (metres) from (x0, z0); amplitude: fold depth (m);
    fold: fold period (m); flare: extra amplitude fraction at the bottom (0 = none).
    """
    nu = max(8, int(np.ceil(width / fold * 8)))
    nv = 6
    x = x0 + np.linspace(0.0, width, nu)
    z = z0 + np.linspace(0.0, height, nv)
    phase = _u(rng, 0, 2 * np.pi)
    jitter = rng.normal(0.0, 0.15, size=nu)
    amp = amplitude * (1 + flare * (1 - (z - z0) / height))
    y = amp[None, :] * (np.sin(2 * np.pi * (x - x0) / fold + phase) + jitter)[:, None] * 0.8
    grid = np.stack(np.broadcast_arrays(x[:, None], y, z[None, :]), axis=-1)
    return P.thick_sheet(grid, (0.0, thickness / 2, 0.0))


def _curtain(rng: np.random.Generator) -> list[Mesh]:
    total, height = _u(rng, 1.2, 2.6), _u(rng, 1.5, 2.5)
    amp, fold = _u(rng, 0.02, 0.06), _u(rng, 0.08, 0.18)
    rod_z = height + 0.05
    two = _chance(rng, 0.6)
    gap = _u(rng, 0.0, 0.6) if two else 0.0
    pw = (total - gap) / (2 if two else 1)
    starts = [-total / 2, total / 2 - pw] if two else [-total / 2]
    bottom = _u(rng, 0.0, 0.1)
    flare = _u(rng, 0.0, 1.0) if _chance(rng, 0.5) else 0.0
    parts = [
        wavy_curtain(rng, pw, height - bottom, amp, fold, _u(rng, 0.006, 0.012), x0=s, z0=bottom, flare=flare)
        for s in starts
    ]
    if _chance(rng, 0.8):
        parts.append(P.cylinder_between((-total / 2 - 0.1, 0.0, rod_z), (total / 2 + 0.1, 0.0, rod_z), 0.012, 10))
        if _chance(rng, 0.6):
            parts += [P.sphere(0.03, 10, 5, center=(sx * (total / 2 + 0.12), 0.0, rod_z)) for sx in (-1, 1)]
    elif _chance(rng, 0.5):  # valance box
        parts.append(P.box([-total / 2 - 0.05, -0.08, height - 0.02], [total / 2 + 0.05, 0.08, height + 0.2]))
    return parts


# ------------------------------------------------------------------ negatives


def _lamp(rng: np.random.Generator) -> list[Mesh]:
    floor = _chance(rng, 0.5)
    height = _u(rng, 1.4, 1.8) if floor else _u(rng, 0.4, 0.7)
    base_r = _u(rng, 0.12, 0.2) if floor else _u(rng, 0.07, 0.12)
    base_h = _u(rng, 0.02, 0.06)
    parts = [P.frustum(
        base_r, base_r * _u(rng, 0.6, 1.0), base_h, 20
    ) if _chance(rng, 0.7) else P.sphere(base_r, 12, 6, center=(0, 0, base_r * 0.6))]
    if _chance(rng, 0.25):  # articulated desk/floor lamp
        elbow = (0.0, _u(rng, 0.1, 0.3), height * 0.55)
        head = (0.0, -_u(rng, 0.05, 0.25), height)
        parts += [P.cylinder_between((0, 0, base_h), elbow, 0.012, 8), P.cylinder_between(elbow, head, 0.012, 8)]
        parts.append(P.transform(P.frustum(0.06, 0.02, 0.12, 14), P.rotation_x(np.pi * 0.8), translation=head))
        return parts
    shade_h = _u(rng, 0.15, 0.35)
    parts.append(P.cylinder(_u(rng, 0.01, 0.025), height - shade_h * 0.5, 10, base=(0, 0, base_h * 0.5)))
    shape = rng.choice(["cone", "drum", "dome"])
    rb = _u(rng, 0.12, 0.25)
    if shape == "cone":
        parts.append(P.frustum(rb, rb * _u(rng, 0.4, 0.8), shade_h, 20, base=(0, 0, height - shade_h)))
    elif shape == "drum":
        parts.append(P.cylinder(rb, shade_h, 20, base=(0, 0, height - shade_h)))
    else:
        parts.append(P.ellipsoid((rb, rb, shade_h * 0.6), 16, 8, center=(0, 0, height - shade_h * 0.4)))
    return parts


def _monitor(rng: np.random.Generator) -> list[Mesh]:
    w = _u(rng, 0.45, 0.75)
    h = w * _u(rng, 0.5, 0.65)
    crt = _chance(rng, 0.15)
    d = _u(rng, 0.3, 0.4) if crt else _u(rng, 0.015, 0.05)
    z0 = _u(rng, 0.02, 0.05) if crt else _u(rng, 0.08, 0.15)
    parts = [P.box([-w / 2, -d / 2, z0], [w / 2, d / 2, z0 + h])]
    if crt:
        parts.append(P.box([-w * 0.3, -0.15, 0], [w * 0.3, 0.15, z0 + 0.01]))
        return parts
    if _chance(rng, 0.5):
        parts.append(P.box([-w * 0.3, d / 2, z0 + h * 0.2], [w * 0.3, d / 2 + _u(rng, 0.02, 0.05), z0 + h * 0.8]))
    neck_w = _u(rng, 0.03, 0.08)
    parts.append(P.box([-neck_w / 2, d / 2, 0.005], [neck_w / 2, d / 2 + 0.03, z0 + h * 0.5]))
    if _chance(rng, 0.5):
        parts.append(P.box([-_u(rng, 0.1, 0.15), -0.1, 0], [0.12, d / 2 + 0.12, 0.015]))
    else:
        parts.append(P.transform(P.cylinder(_u(rng, 0.08, 0.13), 0.015, 20), translation=(0, d / 2 + 0.02, 0)))
    return parts


def _plant(rng: np.random.Generator) -> list[Mesh]:
    pot_r, pot_h = _u(rng, 0.1, 0.25), _u(rng, 0.15, 0.4)
    parts = [P.frustum(pot_r * _u(rng, 0.6, 0.85), pot_r, pot_h, 16)]
    parts.append(P.cylinder(pot_r * 0.95, 0.02, 16, base=(0, 0, pot_h - 0.03)))
    total = pot_h + _u(rng, 0.3, 1.2)
    n_stems = int(rng.integers(1, 6))
    for _ in range(n_stems):
        a = _u(rng, 0, 2 * np.pi)
        lean = _u(rng, 0.0, 0.3) * (total - pot_h)
        tip = (lean * np.cos(a), lean * np.sin(a), total * _u(rng, 0.75, 1.0))
        parts.append(P.cylinder_between((0, 0, pot_h - 0.02), tip, 0.008, 6))
        for _ in range(int(rng.integers(3, 8))):
            f = _u(rng, 0.3, 1.0)
            c = np.array([tip[0] * f, tip[1] * f, pot_h + (tip[2] - pot_h) * f])
            size = _u(rng, 0.04, 0.12)
            leaf = P.ellipsoid((size, size * 0.4, 0.01), 8, 4)
            rot = P.rotation_z(_u(rng, 0, 2 * np.pi)) @ P.rotation_x(_u(rng, -0.8, 0.8))
            parts.append(P.transform(leaf, rot, translation=c + rot @ np.array([size * 0.8, 0, 0])))
    return parts


def _bottle(rng: np.random.Generator) -> list[Mesh]:
    r, h = _u(rng, 0.03, 0.06), _u(rng, 0.18, 0.32)
    neck_r = _u(rng, 0.012, 0.02)
    shoulder = h * _u(rng, 0.55, 0.75)
    neck_top = h * _u(rng, 0.85, 0.95)
    profile = [
        (0.0, 0.0), (r * 0.95, 0.0), (r, 0.01), (r, shoulder),
        (neck_r, shoulder + (neck_top - shoulder) * 0.6), (neck_r, neck_top), (neck_r * 1.15, neck_top),
        (neck_r * 1.15, h), (0.0, h)
    ]
    return [P.revolve(profile, 16)]


def _vase(rng: np.random.Generator) -> list[Mesh]:
    h = _u(rng, 0.2, 0.6)
    k = int(rng.integers(4, 8))
    z = np.linspace(0.0, h, k)
    r = np.clip(rng.uniform(0.04, 0.14, size=k), 0.03, None)
    r[-1] = max(r[-1], 0.035)
    profile = [(0.0, 0.0)] + list(zip(r, z)) + [(0.0, h)]
    return [P.revolve(profile, 18)]


_BUILDERS: dict[str, Callable[[np.random.Generator], list[Mesh]]] = {
    "bathtub": _bathtub, "bed": _bed, "bookshelf": _bookshelf, "chair": _chair,
    "curtain": _curtain, "desk": _desk, "door": _door, "sink": _sink, "sofa": _sofa,
    "table": _table, "toilet": _toilet, "lamp": _lamp, "monitor": _monitor,
    "plant": _plant, "bottle": _bottle, "vase": _vase, "night_stand": _night_stand,
    "wardrobe": _wardrobe, **NEGATIVE_BUILDERS,
}


def make_cad_model_metric(class_name: str, rng: np.random.Generator) -> Mesh:
    """One model of ``class_name`` in metres: z up, standing on z = 0, centred in x/y, front -y.

    Raises UnknownClassError for a class this library does not generate.
    """
    if class_name not in _BUILDERS:
        raise UnknownClassError(
            f"no CAD generator for class {class_name!r}; known: {', '.join(ALL_CLASSES)}"
        )
    mesh = Mesh.concatenate(_BUILDERS[class_name](rng))
    lo, hi = mesh.bounds()
    return P.transform(mesh, translation=(-(lo[0] + hi[0]) / 2, -(lo[1] + hi[1]) / 2, -lo[2]))


def make_cad_model(class_name: str, rng: np.random.Generator) -> Mesh:
    """One CAD-style model of ``class_name`` as a ModelNet-like file would hold it.

    Returns a Mesh of closed parts: vertices (V, 3) float64 in arbitrary units (metric
    size times a random factor in UNIT_SCALE_RANGE), z up, standing on z = 0, rotated
    about z by a random azimuth. Raises UnknownClassError for an unknown class.
    """
    mesh = make_cad_model_metric(class_name, rng)
    azimuth = _u(rng, 0.0, 2 * np.pi)
    unit = _u(rng, *UNIT_SCALE_RANGE)
    return P.transform(mesh, P.rotation_z(azimuth), scale=unit)
