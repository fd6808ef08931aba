"""A triangle mesh as two arrays, plus the few measures the pipeline needs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Mesh:
    """A triangle mesh.

    vertices: (V, 3) float64, any unit (CAD files) or metres (scans).
    faces:    (F, 3) int64, indices into ``vertices``, counter-clockwise seen from outside.
    """

    vertices: np.ndarray
    faces: np.ndarray

    def __post_init__(self) -> None:
        self.vertices = np.asarray(self.vertices, dtype=np.float64).reshape(-1, 3)
        self.faces = np.asarray(self.faces, dtype=np.int64).reshape(-1, 3)

    def triangle_areas(self) -> np.ndarray:
        """(F,) float64 area of each face."""
        a, b, c = (self.vertices[self.faces[:, i]] for i in range(3))
        return 0.5 * np.linalg.norm(np.cross(b - a, c - a), axis=1)

    def surface_area(self) -> float:
        return float(self.triangle_areas().sum())

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min (3,), max (3,)) of the vertices that faces use."""
        used = self.vertices[np.unique(self.faces)] if len(self.faces) else self.vertices
        return used.min(axis=0), used.max(axis=0)

    @staticmethod
    def concatenate(meshes: "list[Mesh]") -> "Mesh":
        """One mesh holding all faces of ``meshes`` (indices shifted)."""
        vertices, faces, offset = [], [], 0
        for mesh in meshes:
            vertices.append(mesh.vertices)
            faces.append(mesh.faces + offset)
            offset += len(mesh.vertices)
        return Mesh(np.concatenate(vertices), np.concatenate(faces))
