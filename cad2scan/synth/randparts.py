"""Small helpers shared by the parametric CAD builders (:mod:`cad2scan.synth.cad_shapes`,
:mod:`cad2scan.synth.cad_negatives`): random draws and a few placed parts.

Kept apart from both builder modules so that each can import it without an import cycle
(``cad_shapes`` imports ``cad_negatives``).
"""

from __future__ import annotations

import numpy as np

from cad2scan.geometry.mesh import Mesh
from cad2scan.synth import primitives as P


def uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    """One draw from U(lo, hi), as a Python float."""
    return float(rng.uniform(lo, hi))


def chance(rng: np.random.Generator, p: float) -> bool:
    """True with probability ``p``."""
    return bool(rng.random() < p)


def rotate_about(mesh: Mesh, pivot, rotation: np.ndarray) -> Mesh:
    """Rotate ``mesh`` by ``rotation`` (3, 3) about the point ``pivot`` (3,)."""
    pivot = np.asarray(pivot, dtype=np.float64)
    return P.transform(P.transform(mesh, translation=-pivot), rotation, translation=pivot)


def upright_post(round_: bool, x: float, y: float, z0: float, z1: float, t: float) -> Mesh:
    """Upright leg of width ``t`` at (x, y) from z0 to z1: round rod (10 sides) or square bar."""
    if round_:
        return P.cylinder(t / 2, z1 - z0, 10, base=(x, y, z0))
    return P.box([x - t / 2, y - t / 2, z0], [x + t / 2, y + t / 2, z1])
