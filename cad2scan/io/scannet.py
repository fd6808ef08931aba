"""Read ScanNet v2 scenes (original ``scans/<scene>/`` layout) and their preprocessed exports.

A scene is returned as a dict of arrays (Pointcept-style):
``coord`` (N, 3) float32 metres z up (axis-aligned when the scene has a matrix),
``color`` (N, 3) uint8, ``label`` (N,) int64 NYU40 id (0 = unannotated), ``scene_id``.
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import numpy as np

from cad2scan.errors import DataFormatError, EmptyScanError
from cad2scan.io.ply import read_ply, read_ply_points

SCENE_PATTERN = re.compile(r"^scene\d{4}_\d{2}$")


def read_label_map(
    tsv_path: str | Path, from_column: str = "raw_category", to_column: str = "nyu40id"
) -> dict[str, int]:
    """Map one column of ``scannetv2-labels.combined.tsv`` to another.

    Rows whose ``to_column`` cell is empty are left out. Values are ints when the cell is
    an integer (``nyu40id``), else the cell text (e.g. ``to_column="ModelNet40"``).
    Accepts CRLF or LF line ends.
    """
    path = Path(tsv_path)
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter="\t")
    try:
        header = [cell.strip() for cell in next(reader)]
    except StopIteration:
        raise DataFormatError(path, "label map is empty (no header row)") from None
    for column in (from_column, to_column):
        if column not in header:
            raise DataFormatError(path, f"label map has no column {column!r}; columns are {header}")
    src, dst = header.index(from_column), header.index(to_column)
    mapping: dict[str, int] = {}
    for number, row in enumerate(reader, start=2):
        if not any(cell.strip() for cell in row):
            continue
        if len(row) <= max(src, dst):
            raise DataFormatError(path, f"line {number}: {len(row)} columns, expected {len(header)}")
        key, value = row[src].strip(), row[dst].strip()
        if not key or not value:
            continue
        mapping[key] = int(value) if re.fullmatch(r"-?\d+", value) else value
    return mapping


def read_axis_alignment(txt_path: str | Path) -> np.ndarray:
    """(4, 4) float64 ``axisAlignment`` matrix of a scene's ``<scene>.txt`` (row major).

    Identity when the file has no ``axisAlignment`` line.
    """
    path = Path(txt_path)
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        key, sep, value = line.partition("=")
        if sep and key.strip() == "axisAlignment":
            try:
                values = [float(v) for v in value.split()]
            except ValueError:
                values = []
            if len(values) != 16 or not np.isfinite(values).all():
                raise DataFormatError(path, f"line {number}: axisAlignment needs 16 finite numbers")
            return np.array(values, dtype=np.float64).reshape(4, 4)
    return np.eye(4)


def read_split(path: str | Path) -> list[str]:
    """Scene ids of a split file (``scannetv2_train.txt``: one id per line, blanks/# ignored)."""
    path = Path(path)
    ids = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if not SCENE_PATTERN.match(line):
            raise DataFormatError(path, f"line {number}: {line[:40]!r} is not a scene id like scene0000_00")
        ids.append(line)
    return ids


def list_scenes(root: str | Path, split_file: str | Path | None = None) -> list[Path]:
    """Scene folders under ``root`` (the ``scans/`` folder or the folder holding it).

    Without a split file: every ``sceneXXXX_YY`` folder, sorted. With one: the split's
    scenes in file order; a scene the split names but ``root`` lacks is an error.
    """
    root = Path(root)
    if (root / "scans").is_dir():
        root = root / "scans"
    if not root.is_dir():
        raise DataFormatError(root, "ScanNet scans folder not found")
    if split_file is None:
        return sorted(p for p in root.iterdir() if p.is_dir() and SCENE_PATTERN.match(p.name))
    scenes = [root / scene_id for scene_id in read_split(split_file)]
    missing = [p.name for p in scenes if not p.is_dir()]
    if missing:
        raise DataFormatError(
            split_file, f"{len(missing)} scene(s) of the split are not in {root}: {', '.join(missing[:5])}"
        )
    return scenes


def read_scannet_scene(
    scene_dir: str | Path,
    *,
    labels: bool = True,
    align: bool = True,
    label_map_path: str | Path | None = None,
) -> dict:
    """Read one ScanNet scene folder.

    Returns ``coord`` (N, 3) float32 metres z up (multiplied by the ``axisAlignment``
    matrix of ``<scene>.txt`` when ``align`` and the matrix exist), ``color`` (N, 3)
    uint8, ``scene_id`` str, and when ``labels``: ``label`` (N,) int64 NYU40 ids from
    ``<scene>_vh_clean_2.labels.ply``; if that file is absent but the aggregation, the
    segments file and a label map (``label_map_path``, else the tsv found in the scene
    folder or up to three folders above) exist, labels are derived from them and
    ``instance`` (N,) int64 (-1 = none) is added. No label source: no ``label`` key.
    """
    scene_dir = Path(scene_dir)
    if not scene_dir.is_dir():
        raise DataFormatError(scene_dir, "ScanNet scene folder not found")
    scene_id = scene_dir.name
    mesh_path = scene_dir / f"{scene_id}_vh_clean_2.ply"
    if not mesh_path.is_file():
        raise DataFormatError(mesh_path, f"mesh file missing from scene folder {scene_dir}")
    mesh = read_ply_points(mesh_path)
    if "color" not in mesh:
        raise DataFormatError(mesh_path, "ScanNet mesh has no red/green/blue vertex colours")
    coord = mesh["coord"]
    out = {"coord": coord, "color": mesh["color"], "scene_id": scene_id}

    if align:
        info = scene_dir / f"{scene_id}.txt"
        if info.is_file():
            matrix = read_axis_alignment(info)
            if not np.array_equal(matrix, np.eye(4)):
                homogeneous = np.concatenate([coord.astype(np.float64), np.ones((len(coord), 1))], axis=1)
                out["coord"] = (homogeneous @ matrix.T)[:, :3].astype(np.float32)

    if labels:
        labels_path = scene_dir / f"{scene_id}_vh_clean_2.labels.ply"
        if labels_path.is_file():
            vertex = read_ply(labels_path)["vertex"]
            if "label" not in vertex:
                raise DataFormatError(labels_path, "vertex element has no 'label' property")
            if len(vertex["label"]) != len(coord):
                raise DataFormatError(
                    labels_path,
                    f"{len(vertex['label'])} labelled vertices but the mesh {mesh_path.name} has {len(coord)}",
                )
            out["label"] = vertex["label"].astype(np.int64)
        else:
            derived = _labels_from_aggregation(scene_dir, scene_id, len(coord), label_map_path)
            if derived is not None:
                out["label"], out["instance"] = derived
    return out


def scannet_scene_files(
    scene_dir: str | Path, *, labels: bool = True, align: bool = True, label_map_path: str | Path | None = None
) -> list[Path]:
    """The files :func:`read_scannet_scene` reads for these options (those that exist).

    The mesh always (even when missing, so that a caller notices), the ``<scene>.txt``
    when ``align``, and for ``labels`` the ``.labels.ply`` or else the aggregation, the
    segments file and the label map. Used to fingerprint a scene's sources.
    """
    scene_dir = Path(scene_dir)
    scene_id = scene_dir.name
    files = [scene_dir / f"{scene_id}_vh_clean_2.ply"]
    if align and (scene_dir / f"{scene_id}.txt").is_file():
        files.append(scene_dir / f"{scene_id}.txt")
    if labels:
        labels_path = scene_dir / f"{scene_id}_vh_clean_2.labels.ply"
        if labels_path.is_file():
            files.append(labels_path)
        else:
            aggregation = scene_dir / f"{scene_id}.aggregation.json"
            if not aggregation.is_file():
                aggregation = scene_dir / f"{scene_id}_vh_clean.aggregation.json"
            segs = scene_dir / f"{scene_id}_vh_clean_2.0.010000.segs.json"
            tsv = Path(label_map_path) if label_map_path is not None else _find_label_map(scene_dir)
            files += [f for f in (aggregation, segs, tsv) if f is not None and f.is_file()]
    return files


_EXPORT_VERT = re.compile(r"^(?P<scene>scene\d{4}_\d{2})_vert(?P<all>_all)?\.npy$")


def list_scannet_exports(folder: str | Path) -> dict[str, tuple[Path, Path | None]]:
    """``{scene id: (vert file, sem_label file or None)}`` of a folder of VoteNet exports.

    Accepts both namings: ``<scene>_vert.npy`` + ``<scene>_sem_label.npy`` (VoteNet,
    subsampled) and ``<scene>_vert_all.npy`` + ``<scene>_sem_label_all.npy``
    (mmdetection3d, every vertex); when a scene has both, the full ``_all`` pair wins.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataFormatError(folder, "ScanNet export folder not found")
    found: dict[str, tuple[Path, Path | None]] = {}
    for path in sorted(folder.iterdir()):
        match = _EXPORT_VERT.match(path.name)
        if match is None or not path.is_file():
            continue
        scene, suffix = match["scene"], match["all"] or ""
        if scene in found and not suffix:
            continue  # the full export of this scene was already taken
        label = folder / f"{scene}_sem_label{suffix}.npy"
        found[scene] = (path, label if label.is_file() else None)
    return found


def _labels_from_aggregation(
    scene_dir: Path, scene_id: str, n_vertices: int, label_map_path: str | Path | None
) -> tuple[np.ndarray, np.ndarray] | None:
    """(label, instance) per vertex from the aggregation + over-segmentation, or None."""
    aggregation_path = scene_dir / f"{scene_id}.aggregation.json"
    if not aggregation_path.is_file():
        aggregation_path = scene_dir / f"{scene_id}_vh_clean.aggregation.json"
    segs_path = scene_dir / f"{scene_id}_vh_clean_2.0.010000.segs.json"
    tsv_path = Path(label_map_path) if label_map_path is not None else _find_label_map(scene_dir)
    if not (aggregation_path.is_file() and segs_path.is_file() and tsv_path is not None):
        return None
    label_map = read_label_map(tsv_path)
    aggregation = _read_json(aggregation_path)
    segments = _read_json(segs_path)
    try:
        seg_indices = np.asarray(segments["segIndices"], dtype=np.int64)
    except (KeyError, TypeError, ValueError):
        raise DataFormatError(segs_path, "no integer 'segIndices' list") from None
    if len(seg_indices) != n_vertices:
        raise DataFormatError(segs_path, f"{len(seg_indices)} segment indices but the mesh has {n_vertices} vertices")
    groups = aggregation.get("segGroups") if isinstance(aggregation, dict) else None
    if not isinstance(groups, list):
        raise DataFormatError(aggregation_path, "no 'segGroups' list")

    label = np.zeros(n_vertices, dtype=np.int64)
    instance = np.full(n_vertices, -1, dtype=np.int64)
    seen: set[tuple[str, frozenset]] = set()
    for number, group in enumerate(groups):
        try:
            raw, group_segments = str(group["label"]), [int(s) for s in group["segments"]]
        except (KeyError, TypeError, ValueError):
            raise DataFormatError(aggregation_path, f"segGroup #{number} lacks 'label' or integer 'segments'") from None
        key = (raw, frozenset(group_segments))
        if key in seen:  # scene0217_00: every group is listed twice; count each object once
            continue
        seen.add(key)
        mask = np.isin(seg_indices, group_segments)
        nyu = label_map.get(raw, 0)
        label[mask] = nyu if isinstance(nyu, int) else 0
        instance[mask] = len(seen) - 1
    return label, instance


def _find_label_map(scene_dir: Path) -> Path | None:
    name = "scannetv2-labels.combined.tsv"
    for folder in [scene_dir, *list(scene_dir.parents)[:3]]:
        if (folder / name).is_file():
            return folder / name
    return None


def read_scannet_npy(vert_path: str | Path, sem_label_path: str | Path | None = None) -> dict:
    """Read a VoteNet / mmdetection3d ScanNet export (``*_vert.npy`` / ``*_vert_all.npy``).

    vert: (N, 6) float32 axis-aligned xyz + rgb 0..255 (N, 3 accepted: no colour).
    Returns ``coord`` (N, 3) float32, ``color`` (N, 3) uint8 when present, and ``label``
    (N,) int64 NYU40 ids when ``sem_label_path`` (N,) is given.
    """
    vert_path = Path(vert_path)
    vert = _load_npy(vert_path)
    if vert.ndim != 2 or vert.shape[1] < 3:
        raise DataFormatError(vert_path, f"expected an (N, >=3) array, got shape {vert.shape}")
    if len(vert) == 0:
        raise EmptyScanError(vert_path, "export has 0 points")
    coord = vert[:, :3].astype(np.float32)
    bad = ~np.isfinite(coord).all(axis=1)
    if bad.any():
        raise DataFormatError(vert_path, f"{int(bad.sum())} of {len(coord)} points have NaN or infinite coordinates")
    out = {"coord": coord}
    if vert.shape[1] >= 6:
        out["color"] = np.clip(np.rint(np.nan_to_num(vert[:, 3:6].astype(np.float64))), 0, 255).astype(np.uint8)
    if sem_label_path is not None:
        sem_label_path = Path(sem_label_path)
        label = _load_npy(sem_label_path).reshape(-1)
        if len(label) != len(coord):
            raise DataFormatError(sem_label_path, f"{len(label)} labels but {vert_path.name} has {len(coord)} points")
        out["label"] = label.astype(np.int64)
    return out


def _load_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise DataFormatError(path, "file not found") from None
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(path, f"not a readable .npy array ({exc})") from None
    if not isinstance(array, np.ndarray):
        raise DataFormatError(path, "expected a single .npy array, found an .npz archive")
    return array


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataFormatError(path, "file not found") from None
    except UnicodeDecodeError as exc:
        raise DataFormatError(path, f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DataFormatError(path, f"cannot read file ({exc.strerror or exc})") from None


def _read_json(path: Path):
    try:
        return json.loads(_read_text(path))
    except json.JSONDecodeError as exc:
        raise DataFormatError(path, f"invalid JSON at line {exc.lineno}: {exc.msg}") from None
