"""Read and write Object File Format (``.off``) triangle meshes, e.g. ModelNet CAD models.

Reading is tolerant of the quirks of real files (ModelNet's ``OFF9278 6940 0`` merged
header, blank and ``#`` comment lines, quads and n-gons, per-face colours after the
indices) and strict about everything else: wrong counts, out-of-range indices,
non-finite coordinates and empty meshes raise :class:`~cad2scan.errors.DataFormatError`
(or :class:`~cad2scan.errors.EmptyScanError`) naming the file and the line.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from cad2scan.errors import DataFormatError, EmptyScanError
from cad2scan.geometry.mesh import Mesh
from cad2scan.io.atomic import atomic_open
from cad2scan.io.common import read_file_bytes

# OFF, COFF, NOFF, CNOFF, STOFF ...: the letters before "OFF" announce extra per-vertex
# columns (colours, normals, texture coordinates); only the first three are kept.
_HEADER = re.compile(r"^(?P<kind>[A-Z]*)OFF(?P<rest>.*)$")


def fan_triangulate(polygons: list[np.ndarray]) -> np.ndarray:
    """Split polygons into triangles as fans around their first vertex.

    polygons: list of (k_i,) int arrays, k_i >= 3, vertex indices of one polygon each.
    Returns (sum(k_i - 2), 3) int64 triangles, in polygon order.
    """
    if not polygons:
        return np.zeros((0, 3), dtype=np.int64)
    sizes = np.fromiter((len(p) for p in polygons), dtype=np.int64, count=len(polygons))
    flat = np.concatenate([np.asarray(p, dtype=np.int64) for p in polygons])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    n_tri = sizes - 2
    owner = np.repeat(np.arange(len(polygons)), n_tri)  # polygon of each triangle
    # position of the triangle within its polygon: 0 .. k_i - 3
    local = np.arange(n_tri.sum()) - np.repeat(np.cumsum(n_tri) - n_tri, n_tri)
    base = starts[owner]
    return np.stack([flat[base], flat[base + local + 1], flat[base + local + 2]], axis=1)


def write_off(path: str | Path, mesh: Mesh) -> None:
    """Write ``mesh`` as a plain ASCII OFF file, atomically.

    Layout: ``OFF``, then ``V F 0``, then V lines ``x y z`` (17 significant digits, so
    float64 coordinates round-trip exactly), then F lines ``3 i j k``.
    """
    vertices = np.asarray(mesh.vertices, dtype=np.float64).reshape(-1, 3)
    faces = np.asarray(mesh.faces, dtype=np.int64).reshape(-1, 3)
    parts = [f"OFF\n{len(vertices)} {len(faces)} 0\n"]
    if len(vertices):
        parts.append(("%.17g %.17g %.17g\n" * len(vertices)) % tuple(vertices.ravel().tolist()))
    if len(faces):
        parts.append(("3 %d %d %d\n" * len(faces)) % tuple(faces.ravel().tolist()))
    with atomic_open(path, "w") as handle:
        handle.write("".join(parts))


def read_off(path: str | Path) -> Mesh:
    """Read an OFF mesh; n-gon faces are fan-triangulated.

    Returns a :class:`Mesh` with vertices (V, 3) float64 (file units) and faces (F, 3)
    int64. Raises DataFormatError (path + line + reason) on any malformed content and
    EmptyScanError when the mesh has no vertices or no faces.
    """
    path = Path(path)
    raw = read_file_bytes(path)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"not a text OFF file (byte {exc.start} is not UTF-8)") from None

    lines, numbers = _content_lines(text)
    if not lines:
        raise EmptyScanError(path, "empty OFF file (no content lines)")

    match = _HEADER.match(lines[0])
    if match is None:
        raise DataFormatError(path, f"line {numbers[0]}: expected an 'OFF' header, found {lines[0][:40]!r}")
    counts_text, cursor = match["rest"].strip(), 1
    if not counts_text:  # "OFF" alone: the counts are on the next content line
        if len(lines) < 2:
            raise DataFormatError(path, "missing the 'V F E' counts line after 'OFF'")
        counts_text, cursor = lines[1], 2
    n_vertices, n_faces = _parse_counts(path, counts_text, numbers[cursor - 1])

    if n_vertices == 0:
        raise EmptyScanError(path, "mesh declares 0 vertices")
    if n_faces == 0:
        raise EmptyScanError(path, f"mesh declares {n_vertices} vertices but 0 faces")
    available = len(lines) - cursor
    if available < n_vertices + n_faces:
        raise DataFormatError(
            path,
            f"header declares {n_vertices} vertices and {n_faces} faces "
            f"({n_vertices + n_faces} data lines) but the file has only {available} data lines",
        )
    if available > n_vertices + n_faces:
        extra = cursor + n_vertices + n_faces
        raise DataFormatError(
            path,
            f"line {numbers[extra]}: more data lines than the header declares "
            f"({n_vertices} vertices + {n_faces} faces); counts are wrong or the file is corrupt",
        )

    vertex_lines = lines[cursor : cursor + n_vertices]
    face_lines = lines[cursor + n_vertices :]
    vertices = _parse_vertices(path, vertex_lines, numbers[cursor : cursor + n_vertices])
    face_numbers = numbers[cursor + n_vertices :]
    faces = _parse_faces(path, face_lines, face_numbers)

    bad = (faces < 0) | (faces >= n_vertices)
    if bad.any():
        raise DataFormatError(
            path,
            f"{int(bad.any(axis=1).sum())} face(s) use vertex indices outside 0..{n_vertices - 1} "
            f"(e.g. index {int(faces[bad][0])})",
        )
    return Mesh(vertices, faces)


def _content_lines(text: str) -> tuple[list[str], list[int]]:
    """Non-blank lines with ``#`` comments removed, and their 1-based line numbers."""
    lines, numbers = [], []
    has_comments = "#" in text
    for number, line in enumerate(text.splitlines(), start=1):
        if has_comments:
            line = line.split("#", 1)[0]
        line = line.strip()
        if line:
            lines.append(line)
            numbers.append(number)
    return lines, numbers


def _parse_counts(path: Path, text: str, line_number: int) -> tuple[int, int]:
    fields = text.split()
    try:
        counts = [int(f) for f in fields]
    except ValueError:
        counts = []
    if len(counts) not in (2, 3) or min(counts) < 0:
        raise DataFormatError(
            path, f"line {line_number}: expected 'V F E' vertex/face/edge counts, found {text[:60]!r}"
        )
    return counts[0], counts[1]


def _parse_vertices(path: Path, lines: list[str], numbers: list[int]) -> np.ndarray:
    """(V, 3) float64 from vertex lines (extra columns such as colours are dropped)."""
    n = len(lines)
    tokens = " ".join(lines).split()
    if len(tokens) % n == 0 and len(tokens) // n >= 3:
        width = len(tokens) // n
        try:
            table = np.array(tokens, dtype=np.float64).reshape(n, width)
        except ValueError:
            table = None
        # equal total does not prove equal rows: confirm when the width is not exactly 3
        if table is not None and (width == 3 or all(len(l.split()) == width for l in lines)):
            return _check_finite(path, table[:, :3].copy())
    for line, number in zip(lines, numbers):  # slow path: find the first bad line
        fields = line.split()
        if len(fields) < 3:
            raise DataFormatError(path, f"line {number}: vertex needs 3 coordinates, found {line[:60]!r}")
        try:
            [float(f) for f in fields]
        except ValueError:
            raise DataFormatError(path, f"line {number}: vertex has a non-numeric value: {line[:60]!r}") from None
    raise DataFormatError(path, "vertex lines have inconsistent numbers of columns")


def _check_finite(path: Path, vertices: np.ndarray) -> np.ndarray:
    finite = np.isfinite(vertices).all(axis=1)
    if not finite.all():
        raise DataFormatError(
            path, f"{int((~finite).sum())} vertices have NaN or infinite coordinates (first: vertex {int(np.argmin(finite))})"
        )
    return vertices


def _parse_faces(path: Path, lines: list[str], numbers: list[int]) -> np.ndarray:
    """(T, 3) int64 triangles from face lines ``k i1 .. ik [colour...]``."""
    n = len(lines)
    tokens = " ".join(lines).split()
    # fast path: every face a triangle (k = 3) or every face a quad (k = 4), nothing after
    for k in (3, 4):
        if len(tokens) != n * (k + 1):
            continue
        try:
            table = np.array(tokens, dtype=np.int64).reshape(n, k + 1)
        except ValueError:
            break  # non-integer somewhere: let the slow path name the line
        if (table[:, 0] == k).all():
            if k == 3:
                return table[:, 1:].copy()
            quads = table[:, 1:]
            return np.stack([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]], axis=1).reshape(-1, 3)
        break
    polygons = []
    for line, number in zip(lines, numbers):
        fields = line.split()
        try:
            k = int(fields[0])
            polygon = np.array(fields[1 : 1 + k], dtype=np.int64)
        except ValueError:
            raise DataFormatError(path, f"line {number}: face has a non-integer value: {line[:60]!r}") from None
        if k < 3:
            raise DataFormatError(path, f"line {number}: face with {k} vertices (need at least 3)")
        if len(polygon) < k:
            raise DataFormatError(path, f"line {number}: face declares {k} vertices but lists {len(polygon)}")
        polygons.append(polygon)
    return fan_triangulate(polygons)
