"""Read and write PLY point clouds and meshes (ascii, binary little and big endian).

The writer produces ScanNet's layout: vertex ``x y z`` float, ``red green blue`` uchar,
then optional ``alpha`` and extra per-vertex properties (``label`` ushort ...), and a
``face`` element with ``list uchar int vertex_indices``.

The reader returns plain arrays: ``{element name: {property name: array}}``. Binary
bodies are decoded with one structured numpy dtype per element (also for faces when all
faces have the same number of corners, the common case); ascii bodies are parsed with
numpy in bulk. Every malformed file raises :class:`~cad2scan.errors.DataFormatError`
naming the file and the problem.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cad2scan.errors import DataFormatError, EmptyScanError
from cad2scan.io.atomic import atomic_open
from cad2scan.io.common import read_file_bytes
from cad2scan.io.off import fan_triangulate

# PLY type name -> numpy dtype (native; byte order is applied per file)
PLY_TYPES: dict[str, np.dtype] = {
    "char": np.dtype(np.int8), "int8": np.dtype(np.int8),
    "uchar": np.dtype(np.uint8), "uint8": np.dtype(np.uint8),
    "short": np.dtype(np.int16), "int16": np.dtype(np.int16),
    "ushort": np.dtype(np.uint16), "uint16": np.dtype(np.uint16),
    "int": np.dtype(np.int32), "int32": np.dtype(np.int32),
    "uint": np.dtype(np.uint32), "uint32": np.dtype(np.uint32),
    "float": np.dtype(np.float32), "float32": np.dtype(np.float32),
    "double": np.dtype(np.float64), "float64": np.dtype(np.float64),
}
# numpy dtype -> the PLY name the writer uses (ScanNet's short names)
_WRITE_NAMES = {
    np.dtype(np.int8): "char", np.dtype(np.uint8): "uchar",
    np.dtype(np.int16): "short", np.dtype(np.uint16): "ushort",
    np.dtype(np.int32): "int", np.dtype(np.uint32): "uint",
    np.dtype(np.float32): "float", np.dtype(np.float64): "double",
}
_FORMATS = {"ascii": None, "binary_little_endian": "<", "binary_big_endian": ">"}
_FACE_LISTS = ("vertex_indices", "vertex_index")


# --------------------------------------------------------------------------- writing


def write_ply(
    path: str | Path,
    points: np.ndarray,
    colors: np.ndarray | None = None,
    faces: np.ndarray | None = None,
    properties: dict[str, np.ndarray] | None = None,
    binary: bool = True,
    *,
    big_endian: bool = False,
) -> None:
    """Write a point cloud or triangle mesh as PLY, atomically.

    points:     (N, 3) float, written as float32 ``x y z``.
    colors:     (N, 3) uint8 ``red green blue``, or None.
    faces:      (F, 3) int triangles (``list uchar int vertex_indices``), or None.
    properties: extra per-vertex (N,) arrays written after the colours in dict order with
                their own PLY type (uint16 -> ushort, int32 -> int, float32 -> float ...);
                ``alpha`` (uint8) is placed right after ``blue``. int64 / bool arrays are
                stored as int / uchar when their values fit, otherwise ValueError.
    binary:     binary (little endian unless ``big_endian``) or ascii.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must be (N, 3), got {points.shape}")
    n = len(points)
    columns: list[tuple[str, np.ndarray]] = [
        (axis, points[:, i].astype(np.float32)) for i, axis in enumerate("xyz")
    ]
    extra = dict(properties or {})
    if colors is not None:
        colors = np.asarray(colors)
        if colors.shape != (n, 3):
            raise ValueError(f"colors must be ({n}, 3), got {colors.shape}")
        if colors.dtype != np.uint8:
            if np.issubdtype(colors.dtype, np.floating) or colors.min() < 0 or colors.max() > 255:
                raise ValueError(f"colors must be uint8 (0..255), got dtype {colors.dtype}")
            colors = colors.astype(np.uint8)
        columns += [(name, colors[:, i]) for i, name in enumerate(("red", "green", "blue"))]
        if "alpha" in extra:
            columns.append(("alpha", _writable(extra.pop("alpha"), "alpha", n)))
    for name, values in extra.items():
        if name in {c for c, _ in columns}:
            raise ValueError(f"property {name!r} clashes with a coordinate or colour property")
        if not name.isidentifier():
            raise ValueError(f"property name {name!r} is not a valid PLY identifier")
        columns.append((name, _writable(values, name, n)))

    if faces is not None:
        faces = np.asarray(faces)
        if faces.ndim != 2 or faces.shape[1] != 3:
            raise ValueError(f"faces must be (F, 3), got {faces.shape}")
        if len(faces) and (faces.min() < 0 or faces.max() >= n):
            raise ValueError(f"face indices must lie in 0..{n - 1}")

    order = ">" if big_endian else "<"
    fmt = ("binary_big_endian" if big_endian else "binary_little_endian") if binary else "ascii"
    header = ["ply", f"format {fmt} 1.0", "comment written by cad2scan", f"element vertex {n}"]
    header += [f"property {_WRITE_NAMES[values.dtype]} {name}" for name, values in columns]
    if faces is not None:
        header += [f"element face {len(faces)}", "property list uchar int vertex_indices"]
    header.append("end_header")
    header_bytes = ("\n".join(header) + "\n").encode("ascii")

    with atomic_open(path, "wb") as handle:
        handle.write(header_bytes)
        if binary:
            record = np.empty(n, dtype=[(name, values.dtype.newbyteorder(order)) for name, values in columns])
            for name, values in columns:
                record[name] = values
            handle.write(record.tobytes())
            if faces is not None:
                face_record = np.empty(len(faces), dtype=[("n", "u1"), ("v", f"{order}i4", (3,))])
                face_record["n"] = 3
                face_record["v"] = faces
                handle.write(face_record.tobytes())
        else:
            row = " ".join("%.9g" if v.dtype.kind == "f" and v.dtype.itemsize == 4
                           else "%.17g" if v.dtype.kind == "f" else "%d" for _, v in columns) + "\n"
            values = [v.tolist() for _, v in columns]
            handle.write("".join(row % r for r in zip(*values)).encode("ascii"))
            if faces is not None and len(faces):
                handle.write((("3 %d %d %d\n" * len(faces)) % tuple(faces.ravel().tolist())).encode("ascii"))


def _writable(values: np.ndarray, name: str, n: int) -> np.ndarray:
    """A per-vertex property as an array of a dtype PLY can store."""
    values = np.asarray(values)
    if values.shape != (n,):
        raise ValueError(f"property {name!r} must have shape ({n},), got {values.shape}")
    if values.dtype == np.bool_:
        return values.astype(np.uint8)
    if values.dtype in _WRITE_NAMES:
        return values
    if values.dtype.kind in "iu":
        if n and (values.min() < np.iinfo(np.int32).min or values.max() > np.iinfo(np.int32).max):
            raise ValueError(f"property {name!r} has values outside the int32 range PLY can store")
        return values.astype(np.int32)
    if values.dtype.kind == "f":
        return values.astype(np.float64)
    raise ValueError(f"property {name!r} has dtype {values.dtype}, which PLY cannot store")


# --------------------------------------------------------------------------- header


@dataclass
class PlyProperty:
    name: str
    dtype: np.dtype  # value type (native byte order)
    count_dtype: np.dtype | None = None  # set for list properties


@dataclass
class PlyElement:
    name: str
    count: int
    properties: list[PlyProperty] = field(default_factory=list)


@dataclass
class PlyHeader:
    format: str  # "ascii", "binary_little_endian" or "binary_big_endian"
    elements: list[PlyElement]
    body_offset: int  # first byte after "end_header\n"
    comments: list[str]


def read_ply_header(path: str | Path, data: bytes) -> PlyHeader:
    """Parse the header of the PLY file whose bytes are ``data``."""
    path = Path(path)
    if not (data.startswith(b"ply\n") or data.startswith(b"ply\r\n")):
        raise DataFormatError(path, "not a PLY file (it does not start with 'ply')")
    position = 0
    while True:  # find the line that is exactly "end_header"
        found = data.find(b"end_header", position)
        if found < 0:
            raise DataFormatError(path, "PLY header has no 'end_header' line (truncated or not a PLY file)")
        line_end = data.find(b"\n", found)
        line_ok = data[found - 1 : found] == b"\n" and data[found:line_end if line_end >= 0 else None].rstrip() == b"end_header"
        if line_ok:
            break
        position = found + 1
    body_offset = len(data) if line_end < 0 else line_end + 1
    try:
        header_text = data[:found].decode("utf-8")
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"PLY header is not valid text (byte {exc.start} is not UTF-8)") from None

    fmt, elements, comments = None, [], []
    for number, line in enumerate(header_text.splitlines()[1:], start=2):
        fields = line.split()
        if not fields:
            continue
        keyword = fields[0]
        if keyword in ("comment", "obj_info"):
            comments.append(line.partition(" ")[2])
        elif keyword == "format":
            if len(fields) != 3 or fields[1] not in _FORMATS:
                raise DataFormatError(path, f"header line {number}: unknown PLY format {line.strip()!r}")
            fmt = fields[1]
        elif keyword == "element":
            if len(fields) != 3 or not fields[2].isdigit():
                raise DataFormatError(path, f"header line {number}: malformed element line {line.strip()!r}")
            elements.append(PlyElement(fields[1], int(fields[2])))
        elif keyword == "property":
            if not elements:
                raise DataFormatError(path, f"header line {number}: property before any element")
            elements[-1].properties.append(_parse_property(path, fields, number))
        else:
            raise DataFormatError(path, f"header line {number}: unknown keyword {keyword!r}")
    if fmt is None:
        raise DataFormatError(path, "PLY header has no 'format' line")
    return PlyHeader(fmt, elements, body_offset, comments)


def _parse_property(path: Path, fields: list[str], number: int) -> PlyProperty:
    def ply_type(name: str) -> np.dtype:
        if name not in PLY_TYPES:
            raise DataFormatError(path, f"header line {number}: unknown PLY type {name!r}")
        return PLY_TYPES[name]

    if len(fields) == 5 and fields[1] == "list":
        count_dtype = ply_type(fields[2])
        if count_dtype.kind == "f":
            raise DataFormatError(path, f"header line {number}: list count type must be an integer")
        return PlyProperty(fields[4], ply_type(fields[3]), count_dtype)
    if len(fields) == 3:
        return PlyProperty(fields[2], ply_type(fields[1]))
    raise DataFormatError(path, f"header line {number}: malformed property line {' '.join(fields)!r}")


# --------------------------------------------------------------------------- reading


def read_ply(path: str | Path, *, check_finite: bool = True) -> dict[str, dict[str, np.ndarray]]:
    """Read every element of a PLY file.

    Returns ``{element: {property: array}}``; scalar properties are (count,) arrays of
    their PLY type (native byte order); a list property is a (count, k) array when every
    list has k entries, else an object array of (k_i,) arrays.
    Raises DataFormatError for malformed files, EmptyScanError when the vertex element
    has no vertices, and (when ``check_finite``) DataFormatError when x/y/z hold NaN/inf.
    """
    path = Path(path)
    data = read_file_bytes(path)
    header = read_ply_header(path, data)
    if header.format == "ascii":
        result = _read_ascii_body(path, header, data)
    else:
        result = _read_binary_body(path, header, data, _FORMATS[header.format])

    vertex = result.get("vertex")
    if vertex is not None:
        if not any(e.count for e in header.elements if e.name == "vertex"):
            raise EmptyScanError(path, "PLY file has 0 vertices")
        if check_finite and all(a in vertex for a in "xyz"):
            xyz = [vertex[a] for a in "xyz"]
            if all(v.dtype.kind == "f" for v in xyz):
                bad = ~(np.isfinite(xyz[0]) & np.isfinite(xyz[1]) & np.isfinite(xyz[2]))
                if bad.any():
                    raise DataFormatError(
                        path, f"{int(bad.sum())} of {len(bad)} vertices have NaN or infinite coordinates"
                    )
    return result


def read_ply_points(path: str | Path, *, check_finite: bool = True) -> dict[str, np.ndarray]:
    """Read the vertices (and faces) of a PLY as the pipeline's arrays.

    Returns ``coord`` (N, 3) float32, and when present ``color`` (N, 3) uint8 (float
    colours in 0..1 are scaled to 0..255), ``label`` (N,) int64, ``faces`` (F, 3) int64
    (n-gons fan-triangulated, indices checked against N).
    """
    path = Path(path)
    elements = read_ply(path, check_finite=check_finite)
    vertex = elements.get("vertex")
    if vertex is None:
        raise DataFormatError(path, "PLY file has no 'vertex' element")
    missing = [a for a in "xyz" if a not in vertex]
    if missing:
        raise DataFormatError(path, f"vertex element lacks the coordinate properties {missing}")
    out = {"coord": np.stack([vertex[a] for a in "xyz"], axis=1).astype(np.float32)}
    n = len(out["coord"])
    for names in (("red", "green", "blue"), ("diffuse_red", "diffuse_green", "diffuse_blue"), ("r", "g", "b")):
        if all(c in vertex for c in names):
            out["color"] = _as_uint8_colors(np.stack([vertex[c] for c in names], axis=1))
            break
    if "label" in vertex:
        out["label"] = vertex["label"].astype(np.int64)
    face = elements.get("face")
    if face is not None:
        list_name = next((p for p in _FACE_LISTS if p in face), None)
        if list_name is None:
            raise DataFormatError(path, "face element has no 'vertex_indices' list")
        faces = as_triangles(face[list_name])
        if len(faces) and (faces.min() < 0 or faces.max() >= n):
            bad = int(((faces < 0) | (faces >= n)).any(axis=1).sum())
            raise DataFormatError(path, f"{bad} face(s) use vertex indices outside 0..{n - 1}")
        out["faces"] = faces
    return out


def as_triangles(lists: np.ndarray) -> np.ndarray:
    """(F, 3) int64 triangles from a face list property: (F, k) array or ragged object array."""
    if lists.dtype != object:
        lists = lists.astype(np.int64)
        k = lists.shape[1]
        if k == 3:
            return lists
        if k < 3:
            return np.zeros((0, 3), dtype=np.int64)
        fan = np.arange(1, k - 1)
        return np.stack([np.repeat(lists[:, :1], k - 2, axis=1), lists[:, fan], lists[:, fan + 1]], axis=2).reshape(-1, 3)
    return fan_triangulate([p for p in lists if len(p) >= 3])


def _as_uint8_colors(colors: np.ndarray) -> np.ndarray:
    if colors.dtype == np.uint8:
        return colors
    if colors.dtype.kind == "f":
        finite = np.nan_to_num(colors.astype(np.float64))
        scale = 255.0 if finite.size and finite.max() <= 1.0 else 1.0
        return np.clip(np.rint(finite * scale), 0, 255).astype(np.uint8)
    return np.clip(colors, 0, 255).astype(np.uint8)


def _read_binary_body(path: Path, header: PlyHeader, data: bytes, order: str) -> dict[str, dict[str, np.ndarray]]:
    offset = header.body_offset
    result = {}
    for element in header.elements:
        if any(p.count_dtype is not None for p in element.properties):
            values, offset = _read_binary_lists(path, element, data, offset, order)
        else:
            dtype = np.dtype([(p.name, p.dtype.newbyteorder(order)) for p in element.properties])
            needed = dtype.itemsize * element.count
            if offset + needed > len(data):
                raise DataFormatError(
                    path,
                    f"truncated binary body: element '{element.name}' needs {needed} bytes "
                    f"({element.count} x {dtype.itemsize}) from byte {offset}, file has {len(data) - offset}",
                )
            table = np.frombuffer(data, dtype=dtype, count=element.count, offset=offset)
            offset += needed
            values = {p.name: _native(table[p.name]) for p in element.properties}
        result[element.name] = values
    return result


def _read_binary_lists(path, element, data, offset, order):
    """Decode an element with list properties; one structured dtype when lists are uniform."""
    props = element.properties
    # fast path: guess every list has the length of the first element's lists
    guessed = _guess_list_lengths(data, offset, props, order)
    if guessed is not None:
        fields = []
        for i, p in enumerate(props):
            if p.count_dtype is None:
                fields.append((f"s{i}", p.dtype.newbyteorder(order)))
            else:
                fields.append((f"n{i}", p.count_dtype.newbyteorder(order)))
                fields.append((f"v{i}", p.dtype.newbyteorder(order), (guessed[i],)))
        dtype = np.dtype(fields)
        needed = dtype.itemsize * element.count
        if offset + needed <= len(data):
            table = np.frombuffer(data, dtype=dtype, count=element.count, offset=offset)
            uniform = all((table[f"n{i}"] == guessed[i]).all() for i, p in enumerate(props) if p.count_dtype is not None)
            if uniform:
                values = {}
                for i, p in enumerate(props):
                    key = f"s{i}" if p.count_dtype is None else f"v{i}"
                    values[p.name] = _native(table[key])
                return values, offset + needed
    # general path: walk element by element
    columns = {p.name: [] for p in props}
    end = len(data)
    for index in range(element.count):
        for p in props:
            if p.count_dtype is None:
                size = p.dtype.itemsize
                if offset + size > end:
                    _truncated(path, element, index)
                columns[p.name].append(np.frombuffer(data, p.dtype.newbyteorder(order), 1, offset)[0])
                offset += size
            else:
                size = p.count_dtype.itemsize
                if offset + size > end:
                    _truncated(path, element, index)
                k = int(np.frombuffer(data, p.count_dtype.newbyteorder(order), 1, offset)[0])
                offset += size
                if offset + k * p.dtype.itemsize > end:
                    _truncated(path, element, index)
                columns[p.name].append(_native(np.frombuffer(data, p.dtype.newbyteorder(order), k, offset)))
                offset += k * p.dtype.itemsize
    return {p.name: _column(columns[p.name], p) for p in props}, offset


def _guess_list_lengths(data, offset, props, order) -> dict[int, int] | None:
    lengths = {}
    for i, p in enumerate(props):
        if p.count_dtype is None:
            offset += p.dtype.itemsize
            continue
        if offset + p.count_dtype.itemsize > len(data):
            return None
        k = int(np.frombuffer(data, p.count_dtype.newbyteorder(order), 1, offset)[0])
        lengths[i] = k
        offset += p.count_dtype.itemsize + k * p.dtype.itemsize
    return lengths


def _truncated(path, element, index):
    raise DataFormatError(
        path, f"truncated binary body: element '{element.name}' ends at item {index} of {element.count}"
    )


def _column(items: list, prop: PlyProperty) -> np.ndarray:
    """Stack per-element values: (count,) for scalars, (count, k) or ragged object array for lists."""
    if prop.count_dtype is None:
        return np.array(items, dtype=prop.dtype)
    lengths = {len(v) for v in items}
    if len(lengths) <= 1:
        k = lengths.pop() if lengths else 0
        return np.array(items, dtype=prop.dtype).reshape(len(items), k)
    ragged = np.empty(len(items), dtype=object)
    ragged[:] = [np.asarray(v, dtype=prop.dtype) for v in items]
    return ragged


def _native(array: np.ndarray) -> np.ndarray:
    """Copy into native byte order (frombuffer views are read-only and may be big endian)."""
    return array.astype(array.dtype.newbyteorder("="), copy=True)


def _read_ascii_body(path: Path, header: PlyHeader, data: bytes) -> dict[str, dict[str, np.ndarray]]:
    try:
        text = data[header.body_offset :].decode("ascii")
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"ascii PLY body has a non-ASCII byte at offset {header.body_offset + exc.start}") from None
    lines = [line for line in text.splitlines() if line.strip()]
    header_lines = data[: header.body_offset].count(b"\n")
    cursor = 0
    result = {}
    for element in header.elements:
        chunk = lines[cursor : cursor + element.count]
        if len(chunk) < element.count:
            raise DataFormatError(
                path,
                f"ascii body ends early: header declares {element.count} '{element.name}' lines, "
                f"found {len(chunk)}",
            )
        result[element.name] = _parse_ascii_element(path, element, chunk, header_lines + cursor)
        cursor += element.count
    if cursor < len(lines):
        raise DataFormatError(
            path,
            f"ascii body has {len(lines) - cursor} more lines than the header declares "
            f"({', '.join(f'{e.count} {e.name}' for e in header.elements)}); wrong element count?",
        )
    return result


def _parse_ascii_element(path: Path, element: PlyElement, lines: list[str], first_line: int) -> dict:
    props = element.properties
    n = len(lines)
    if n == 0:
        return {p.name: np.zeros((0,), dtype=p.dtype) if p.count_dtype is None else np.zeros((0, 0), p.dtype) for p in props}
    has_lists = any(p.count_dtype is not None for p in props)
    tokens = " ".join(lines).split()
    width = len(props)
    if has_lists:  # width from the first line, assuming every line is shaped alike
        first = lines[0].split()
        width, position, ok = 0, 0, True
        for p in props:
            if p.count_dtype is None:
                position += 1
            else:
                try:
                    k = int(first[position])
                except (IndexError, ValueError):
                    ok = False
                    break
                position += 1 + k
        width = position if ok else -1
    if width > 0 and len(tokens) == n * width:
        try:
            table = np.array(tokens, dtype=np.float64).reshape(n, width)
        except ValueError:
            table = None
        if table is not None:
            values, position, uniform = {}, 0, True
            for p in props:
                if p.count_dtype is None:
                    values[p.name] = table[:, position].astype(p.dtype)
                    position += 1
                else:
                    k = int(table[0, position])
                    if not (table[:, position] == k).all():
                        uniform = False
                        break
                    values[p.name] = table[:, position + 1 : position + 1 + k].astype(p.dtype)
                    position += 1 + k
            if uniform:
                return values
    # slow path: line by line, naming the first bad line
    columns = {p.name: [] for p in props}
    for index, line in enumerate(lines):
        fields = line.split()
        position = 0
        try:
            for p in props:
                if p.count_dtype is None:
                    columns[p.name].append(float(fields[position]))
                    position += 1
                else:
                    k = int(fields[position])
                    columns[p.name].append([float(f) for f in fields[position + 1 : position + 1 + k]])
                    if len(columns[p.name][-1]) != k:
                        raise IndexError
                    position += 1 + k
            if position != len(fields):
                raise IndexError
        except (IndexError, ValueError):
            raise DataFormatError(
                path,
                f"ascii '{element.name}' item {index} (line ~{first_line + index + 1}) does not match the "
                f"header's properties ({' '.join(p.name for p in props)}): {line.strip()[:80]!r}; "
                f"is the declared count of {element.count} '{element.name}' wrong?",
            ) from None
    return {p.name: _column(columns[p.name], p) for p in props}
