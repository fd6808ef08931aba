"""Read any user scan (``cad2scan predict any.ply``) into metres.

``read_scan`` dispatches on the file extension and returns ``coord`` (N, 3) float32
metres and, when the file has colours, ``color`` (N, 3) uint8. Units are converted at
this edge: given explicitly, or guessed from the bounding box with a logged warning.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path

import numpy as np

from cad2scan.errors import ConfigError, DataFormatError, EmptyScanError
from cad2scan.io.ply import read_ply_points

logger = logging.getLogger(__name__)

UNIT_SCALES: dict[str, float] = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254, "ft": 0.3048}
SCAN_EXTENSIONS: tuple[str, ...] = (".ply", ".npy", ".npz", ".txt", ".xyz", ".pts", ".csv", ".pcd", ".las", ".laz")
# bounding-box extent (largest side, file units) above which metres are implausible
CENTIMETRE_EXTENT = 200.0
MILLIMETRE_EXTENT = 2000.0
# metres from the origin beyond which float32 spacing exceeds ~1 cm (georeferenced LAS, UTM)
FLOAT32_SAFE_RANGE = 1.0e5


def read_scan(path: str | Path, units: str | None = None, *, drop_invalid: bool = False) -> dict[str, np.ndarray]:
    """Read a point cloud or mesh scan.

    path:   .ply (mesh or cloud, ascii/binary), .npy ((N, >=3): xyz [rgb]), .npz (key
            coord/points/xyz [+ color/colors/rgb]), .txt/.xyz/.pts/.csv (whitespace or
            comma separated, optional header line), .pcd (ascii/binary; x y z [rgb]),
            .las/.laz (needs the optional ``laspy`` package).
    units:  "m", "cm", "mm", "in" or "ft"; None guesses from the bounding box: largest
            side > 2000 -> mm, > 200 -> cm, else m (a warning is logged when not m).
    drop_invalid: drop points with NaN/inf coordinates (with a warning) instead of raising.
    Returns ``coord`` (N, 3) float32 metres and, when present, ``color`` (N, 3) uint8.
    """
    path = Path(path)
    if units is not None and units not in UNIT_SCALES:
        raise ConfigError(f"units must be one of {sorted(UNIT_SCALES)}, got {units!r}")
    suffix = path.suffix.lower()
    readers = {
        ".ply": _read_ply, ".npy": _read_npy, ".npz": _read_npz, ".txt": _read_text,
        ".xyz": _read_text, ".pts": _read_text, ".csv": _read_text, ".pcd": _read_pcd,
        ".las": _read_las, ".laz": _read_las,
    }
    if suffix not in readers:
        raise DataFormatError(path, f"unknown scan extension {suffix or '(none)'!r}; supported: {', '.join(SCAN_EXTENSIONS)}")
    if not path.is_file():
        raise DataFormatError(path, "file not found")
    coord, color = readers[suffix](path)
    coord = np.asarray(coord, dtype=np.float64).reshape(-1, 3)
    if len(coord) == 0:
        raise EmptyScanError(path, "scan has no points")

    valid = np.isfinite(coord).all(axis=1)
    if not valid.all():
        n_bad = int((~valid).sum())
        if not drop_invalid:
            raise DataFormatError(
                path, f"{n_bad} of {len(coord)} points have NaN or infinite coordinates (use drop_invalid=True to drop them)"
            )
        warnings.warn(f"{path}: dropped {n_bad} of {len(coord)} points with NaN or infinite coordinates", stacklevel=2)
        coord = coord[valid]
        color = None if color is None else color[valid]
        if len(coord) == 0:
            raise EmptyScanError(path, "scan has no valid points")

    scale = UNIT_SCALES[units] if units is not None else _guess_scale(path, coord)
    coord = coord * scale
    _warn_if_far_from_origin(path, coord)
    out = {"coord": coord.astype(np.float32)}
    if color is not None:
        out["color"] = color
    return out


def _guess_scale(path: Path, coord: np.ndarray) -> float:
    extent = float((coord.max(axis=0) - coord.min(axis=0)).max())
    if extent > MILLIMETRE_EXTENT:
        unit = "mm"
    elif extent > CENTIMETRE_EXTENT:
        unit = "cm"
    else:
        return 1.0
    logger.warning(
        "%s: bounding box is %.0f units across, too large for metres; assuming %s "
        "(pass units='m'/'cm'/'mm'/'in'/'ft' to override)", path, extent, unit,
    )
    return UNIT_SCALES[unit]


def _warn_if_far_from_origin(path: Path, coord: np.ndarray) -> None:
    """Log a warning when float32 would round ``coord`` ((N, 3) float64 metres) coarsely."""
    reach = float(np.abs(coord).max())
    if reach > FLOAT32_SAFE_RANGE:
        spacing = float(np.spacing(np.float32(reach)))
        logger.warning(
            "%s: points lie up to %.0f m from the origin; as float32 they are rounded to about %.3f m "
            "(re-centre the scan, e.g. subtract its georeferencing offset, when precision matters)", path, reach, spacing,
        )


def _colors_to_uint8(path: Path, colors: np.ndarray) -> np.ndarray | None:
    """(N, 3) uint8 from colour columns: 0..1 floats are scaled, 0..255 values rounded."""
    colors = np.asarray(colors)
    if colors.dtype == np.uint8:
        return colors
    values = colors.astype(np.float64)
    finite = values[np.isfinite(values)]
    if finite.size and finite.max() <= 1.0 and colors.dtype.kind == "f":
        values = values * 255.0
    elif finite.size and finite.max() > 255:
        values = values / 257.0  # 16-bit colours (some PLY)
    return np.clip(np.rint(np.nan_to_num(values)), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------ one reader per format


def _read_ply(path: Path):
    scan = read_ply_points(path, check_finite=False)
    return scan["coord"], scan.get("color")


def _from_table(path: Path, table: np.ndarray, color_columns=(3, 4, 5)):
    if table.ndim != 2 or table.shape[1] < 3:
        raise DataFormatError(path, f"expected an (N, >=3) array of points, got shape {table.shape}")
    if table.dtype.kind not in "iuf":
        raise DataFormatError(path, f"expected a numeric array, got dtype {table.dtype}")
    color = None
    if color_columns is not None and table.shape[1] > max(color_columns):
        color = _colors_to_uint8(path, table[:, list(color_columns)])
    return table[:, :3], color


def _read_npy(path: Path):
    try:
        table = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(path, f"not a readable .npy array ({exc})") from None
    if not isinstance(table, np.ndarray):
        raise DataFormatError(path, "this is an .npz archive; rename it to .npz")
    return _from_table(path, table)


def _read_npz(path: Path):
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(path, f"not a readable .npz archive ({exc})") from None
    if not hasattr(archive, "files"):
        raise DataFormatError(path, "this is a single .npy array; rename it to .npy")
    with archive:
        key = next((k for k in ("coord", "points", "xyz") if k in archive.files), None)
        if key is None:
            raise DataFormatError(path, f"no 'coord', 'points' or 'xyz' array; keys are {archive.files}")
        coord, color = _from_table(path, archive[key], color_columns=None)
        color_key = next((k for k in ("color", "colors", "rgb") if k in archive.files), None)
        if color_key is not None:
            raw = archive[color_key]
            if raw.shape != (len(coord), 3):
                raise DataFormatError(path, f"'{color_key}' has shape {raw.shape}, expected ({len(coord)}, 3)")
            color = _colors_to_uint8(path, raw)
    return coord, color


_NAME_ALIASES = {"x": "x", "y": "y", "z": "z", "r": "r", "red": "r", "g": "g", "green": "g",
                 "b": "b", "blue": "b", "rf": "r", "gf": "g", "bf": "b"}


def _read_text(path: Path):
    """Whitespace/comma separated columns; an optional header line names them."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"not a text point file (byte {exc.start} is not UTF-8)") from None
    lines = text.replace(",", " ").replace(";", " ").replace("\t", " ").splitlines()
    if not any(line.strip() for line in lines):
        raise EmptyScanError(path, "file is empty")
    # leading non-numeric lines: a header naming the columns, or comments / metadata
    names, first = None, 0
    while first < len(lines):
        tokens = lines[first].strip().lstrip("/#").split()
        if tokens and _all_numbers(tokens):
            if len(tokens) == 1 and path.suffix.lower() == ".pts":
                first += 1  # Leica .pts: the first line is the point count
            break
        candidate = [_NAME_ALIASES.get(t.lower(), t.lower()) for t in tokens]
        if all(a in candidate for a in "xyz"):
            names = candidate
        first += 1
    body = "\n".join(lines[first:])
    if not body.strip():
        raise EmptyScanError(path, "no numeric point rows (only header or comment lines)")
    try:
        table = np.loadtxt(io.StringIO(body), dtype=np.float64, ndmin=2, comments="#")
    except ValueError as exc:
        reason = str(exc).replace("\n", " ")
        raise DataFormatError(path, f"unreadable point rows after line {first} ({reason[:160]})") from None
    if table.shape[1] < 3:
        raise DataFormatError(path, f"rows have {table.shape[1]} column(s); need at least x y z")
    if names is not None:
        if len(names) != table.shape[1]:
            raise DataFormatError(path, f"header names {len(names)} columns but rows have {table.shape[1]}")
        coord = table[:, [names.index(a) for a in "xyz"]]
        color = _colors_to_uint8(path, table[:, [names.index(c) for c in "rgb"]]) if all(c in names for c in "rgb") else None
        return coord, color
    if path.suffix.lower() == ".pts" and table.shape[1] == 7:
        return _from_table(path, table, color_columns=(4, 5, 6))  # x y z intensity r g b
    if table.shape[1] >= 6 and _looks_like_colors(table[:, 3:6]):
        return _from_table(path, table)
    return table[:, :3], None  # columns 3.. are normals or intensities, not colours


def _all_numbers(tokens: list[str]) -> bool:
    try:
        [float(t) for t in tokens]
    except ValueError:
        return False
    return bool(tokens)


def _looks_like_colors(values: np.ndarray) -> bool:
    """Colour columns are 0..255 integers or 0..1 fractions (normals go negative)."""
    if values.size == 0 or not np.isfinite(values).all() or values.min() < 0:
        return False
    return bool(values.max() <= 1.0 or (values.max() <= 255 and np.all(values == np.round(values))))


# ------------------------------------------------------------------ PCD (Point Cloud Library)

_PCD_TYPES = {("F", 4): "f4", ("F", 8): "f8", ("I", 1): "i1", ("I", 2): "i2", ("I", 4): "i4",
              ("I", 8): "i8", ("U", 1): "u1", ("U", 2): "u2", ("U", 4): "u4", ("U", 8): "u8"}


def _read_pcd(path: Path):
    data = path.read_bytes()
    header, offset = {}, 0
    while True:
        end = data.find(b"\n", offset)
        if end < 0:
            raise DataFormatError(path, "PCD header has no 'DATA' line")
        try:
            line = data[offset:end].decode("ascii").strip()
        except UnicodeDecodeError:
            raise DataFormatError(path, "PCD header is not ASCII text (not a PCD file?)") from None
        offset = end + 1
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition(" ")
        header[key.upper()] = value.split()
        if key.upper() == "DATA":
            break
        if len(header) > 20:
            raise DataFormatError(path, "not a PCD file (no 'DATA' line in the first header lines)")
    try:
        fields = header["FIELDS"]
        sizes = [int(s) for s in header["SIZE"]]
        types = header["TYPE"]
        counts = [int(c) for c in header.get("COUNT", ["1"] * len(fields))]
        n_points = int(header["POINTS"][0]) if "POINTS" in header else int(header["WIDTH"][0]) * int(header["HEIGHT"][0])
        encoding = header["DATA"][0].lower()
    except (KeyError, IndexError, ValueError) as exc:
        raise DataFormatError(path, f"PCD header is missing or has a malformed {exc} entry") from None
    if not (len(fields) == len(sizes) == len(types) == len(counts)):
        raise DataFormatError(path, "PCD FIELDS, SIZE, TYPE and COUNT have different lengths")
    if not all(a in fields for a in "xyz"):
        raise DataFormatError(path, f"PCD fields {fields} lack x, y or z")
    dtype_fields = []
    for index, (name, size, kind, count) in enumerate(zip(fields, sizes, types, counts)):
        code = _PCD_TYPES.get((kind.upper(), size))
        if code is None:
            raise DataFormatError(path, f"PCD field {name!r} has unsupported TYPE {kind} SIZE {size}")
        name = name if name != "_" else f"_pad{index}"
        dtype_fields.append((name, "<" + code, (count,)) if count > 1 else (name, "<" + code))
    dtype = np.dtype(dtype_fields)

    if encoding == "ascii":
        body = data[offset:]
        try:
            table = np.loadtxt(io.BytesIO(body), dtype=np.float64, ndmin=2)
        except ValueError as exc:
            raise DataFormatError(path, f"unreadable ascii PCD row ({str(exc)[:160]})") from None
        if len(table) != n_points:
            raise DataFormatError(path, f"header declares {n_points} points, body has {len(table)} rows")
        if len(table) and table.shape[1] != sum(counts):
            raise DataFormatError(path, f"rows have {table.shape[1]} values, fields need {sum(counts)}")
        columns, start = {}, 0
        for (name, *_), size, kind, count in zip(dtype_fields, sizes, types, counts):
            columns[name] = table[:, start] if count == 1 else table[:, start : start + count]
            if name in ("rgb", "rgba") and count == 1:
                columns[name] = _ascii_packed_rgb(table[:, start])
            start += count
    elif encoding == "binary":
        needed = dtype.itemsize * n_points
        if len(data) - offset < needed:
            raise DataFormatError(
                path, f"truncated binary PCD: {n_points} points need {needed} bytes, file has {len(data) - offset}"
            )
        records = np.frombuffer(data, dtype=dtype, count=n_points, offset=offset)
        columns = {name: records[name] for name in dtype.names}
    else:
        raise DataFormatError(path, f"PCD DATA {encoding!r} is not supported (re-save it as ascii or binary)")

    coord = np.stack([columns[a] for a in "xyz"], axis=1)
    color = None
    packed = next((columns[k] for k in ("rgb", "rgba") if k in columns), None)
    if packed is not None:
        bits = np.ascontiguousarray(packed)
        bits = bits.view(np.uint32) if bits.dtype.itemsize == 4 else bits.astype(np.uint32)
        color = np.stack([(bits >> 16) & 255, (bits >> 8) & 255, bits & 255], axis=1).astype(np.uint8)
    elif all(c in columns for c in ("r", "g", "b")):
        color = _colors_to_uint8(path, np.stack([columns[c] for c in ("r", "g", "b")], axis=1))
    return coord, color


def _ascii_packed_rgb(values: np.ndarray) -> np.ndarray:
    """(N,) uint32 0xAARRGGBB from an ascii PCD rgb column.

    PCL writes the packed colour as an unsigned integer; other writers print the float
    whose bits hold it. Non-negative integers are read as the former, else the latter.
    """
    finite = np.isfinite(values)
    if finite.all() and (values >= 0).all() and (values == np.round(values)).all() and (values < 2**32).all():
        return values.astype(np.uint32)
    return np.nan_to_num(values).astype(np.float32).view(np.uint32)


# ------------------------------------------------------------------ LAS / LAZ (optional laspy)


def _read_las(path: Path):
    """ASPRS LAS 1.0-1.4 (any point format) or LAZ, via the optional ``laspy`` package.

    Coordinates come back scaled and offset (float64, file units); 16-bit colours
    (formats 2, 3, 5, 7, 8, 10) become 8-bit, see ``_las_colors_to_uint8``.
    """
    try:
        import laspy  # optional dependency
    except ImportError:
        raise DataFormatError(path, "reading .las/.laz needs the optional package laspy: pip install laspy "
                                    "(or pip install 'cad2scan[las]', which also brings the LAZ backend lazrs)") from None
    try:
        with laspy.open(str(path)) as reader:
            declared = int(reader.header.point_count)
            if reader.header.are_points_compressed and not laspy.LazBackend.detect_available():
                raise DataFormatError(path, "LAZ-compressed points need a LAZ backend for laspy, none is installed: "
                                            "pip install lazrs (or pip install laszip)")
            points = reader.read_points(-1)
    except DataFormatError:
        raise
    except Exception as exc:  # laspy, lazrs and numpy each raise their own types on a bad file
        reason = str(exc).replace("\n", " ")[:160]
        raise DataFormatError(path, f"not a readable LAS/LAZ file ({type(exc).__name__}: {reason})") from None
    if len(points) != declared:
        raise DataFormatError(path, f"truncated LAS file: header declares {declared} points, file holds {len(points)}")
    coord = np.stack([np.asarray(points.x), np.asarray(points.y), np.asarray(points.z)], axis=1)
    color = None
    if {"red", "green", "blue"} <= set(points.point_format.dimension_names):
        color = _las_colors_to_uint8(np.stack([np.asarray(points.red), np.asarray(points.green),
                                               np.asarray(points.blue)], axis=1))
    return coord, color


def _las_colors_to_uint8(colors: np.ndarray) -> np.ndarray:
    """(N, 3) uint8 from LAS (N, 3) uint16 colours.

    The LAS spec stores 16-bit colours; writers scale 8-bit values by 256 or by 257, and
    some store plain 0..255 values. A high byte (>> 8) recovers the 8-bit value in both
    scaled cases; when no value exceeds 255 the colours are taken as already 8-bit.
    """
    colors = np.asarray(colors, dtype=np.uint16)
    if colors.size and colors.max() > 255:
        colors = colors >> 8
    return colors.astype(np.uint8)


def read_point_labels(path: str | Path, count: int) -> np.ndarray:
    """(count,) int64 per-point labels of a scan from ``.npy``, ``.txt``/``.csv``/``.labels``
    (one integer per line) or a ``.ply`` with a vertex ``label`` property.

    Raises DataFormatError naming ``path`` when it is missing, unreadable, not integer, or
    holds another number of labels than the scan has points.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if not path.is_file():
        raise DataFormatError(path, "labels file not found")
    try:
        if suffix == ".npy":
            labels = np.load(path, allow_pickle=False)
        elif suffix == ".ply":
            from cad2scan.io.ply import read_ply

            vertex = read_ply(path)["vertex"]
            if "label" not in vertex:
                raise DataFormatError(path, "vertex element has no 'label' property")
            labels = vertex["label"]
        elif suffix in (".txt", ".csv", ".labels"):
            labels = np.loadtxt(path, dtype=np.float64, ndmin=1)
        else:
            raise DataFormatError(path, f"labels must be .npy, .txt or .ply, not {suffix or 'no extension'!r}")
    except (OSError, ValueError) as error:
        raise DataFormatError(path, f"unreadable labels ({error})") from None
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != count:
        raise DataFormatError(path, f"{len(labels)} labels for a scan of {count} points")
    if not np.issubdtype(labels.dtype, np.number) or not np.all(np.isfinite(labels)) \
            or not np.all(labels == np.round(labels)):
        raise DataFormatError(path, "labels must be integers")
    return labels.astype(np.int64)


def npz_has_keys(path: str | Path, keys: tuple[str, ...]) -> bool:
    """Whether ``path`` is a readable ``.npz`` holding all ``keys``."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return set(keys) <= set(data.files)
    except (OSError, ValueError):
        return False
