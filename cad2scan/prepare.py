"""Prepare once, train many times: CAD meshes -> model point cache, scans -> scene cache.

Cache layout (one folder per item, ``.npy`` arrays that can be memory-mapped, and a JSON
record written last; see :mod:`cad2scan.itemcache` for how items are checked and rebuilt)::

    <cache>/models/<split>/<class>/<name>.npy    (P, 3) float32 normalised model points
    <cache>/models/<split>/<class>/<name>.json   record: source path/size/sha256, settings
    <cache>/scenes/<format>/<tag>/<scene>/coord.npy   (N, 3) float32 metres, z up
    <cache>/scenes/<format>/<tag>/<scene>/label.npy   (N,) int64 dataset label id, -1 = none
    <cache>/scenes/<format>/<tag>/<scene>/item.json   record (+ floor_z, scene_id)
    <cache>/{models/<split>,scenes/<format>/<tag>}/manifest.json   every item's summary

``<tag>`` is ``unlabelled-v<voxel>`` for training scans, stored one point per voxel (the
network sees voxels and the loss is on synthetic points only), ``labelled-full`` for
evaluation scans, which keep every point and its label, and ``labelled-v<voxel>`` for the
labelled training scans of the supervised objectives (one point per voxel, with its label).
"""

from __future__ import annotations

import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cad2scan.errors import ConfigError, DataFormatError
from cad2scan.itemcache import (CACHE_VERSION, CacheItem, PrepareReport, collect_reports, read_record,  # noqa: F401
                                run_items)

log = logging.getLogger(__name__)

SCENE_FORMATS = ("scannet", "scannet_npy", "s3dis")
SCENE_ROLES = ("train", "train_labelled", "eval")
_SAMPLER = "poisson_disk"  # bump CACHE_VERSION when the sampler or normalisation changes


# ----------------------------------------------------------------------------- CAD models
def list_cad_models(cad_root: str | Path, split: str) -> dict[str, list[Path]]:
    """``{class: [mesh paths]}`` for a ModelNet-style ``<class>/<split>/*.off`` folder."""
    root = Path(cad_root)
    if not root.is_dir():
        raise ConfigError(f"CAD folder {root} does not exist")
    models = {}
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        files = sorted((class_dir / split).glob("*.off"))
        if files:
            models[class_dir.name] = files
    if not models:
        raise ConfigError(f"CAD folder {root} has no <class>/{split}/*.off meshes")
    return models


def _item_seed(seed: int, key: str) -> int:
    """A per-item seed that does not depend on processing order."""
    return (seed * 1_000_003 + zlib.crc32(key.encode())) % (2**32)


def _build_model(item: CacheItem) -> tuple[dict, dict]:
    """Worker: read one mesh, Poisson-disk sample it, normalise. -> ({points (P,3) float32}, meta)."""
    from cad2scan.align.transforms import normalise_model
    from cad2scan.geometry.sampling import poisson_disk_sample
    from cad2scan.io.off import read_off

    points_per_model, seed = item.args
    mesh = read_off(item.source)
    points = poisson_disk_sample(mesh, points_per_model, np.random.default_rng(seed), name=item.source)
    points = normalise_model(np.asarray(points, dtype=np.float32)).astype(np.float32)
    if points.shape != (points_per_model, 3) or not np.isfinite(points).all():
        raise DataFormatError(item.source, f"sampling gave {points.shape} points with non-finite values")
    return {"points": points}, {"vertices": len(mesh.vertices), "faces": len(mesh.faces)}


@dataclass
class ModelBank:
    """Normalised model point clouds by CAD class.

    points[class]: list of (P, 3) float32 arrays (xy-centred, bottom at z = 0, diagonal 1).
    """

    points: dict[str, list[np.ndarray]]

    @property
    def classes(self) -> list[str]:
        return sorted(self.points)

    def count(self) -> dict[str, int]:
        return {name: len(items) for name, items in self.points.items()}


def model_items(models: dict[str, list[Path]], out_root: Path, points_per_model: int, seed: int) -> list[CacheItem]:
    """One cache item per mesh: ``out_root/<class>/<name>.{npy,json}``."""
    items = []
    for name, files in models.items():
        for source in files:
            key = f"{name}/{source.stem}"
            item_seed = _item_seed(seed, f"{name}/{source.name}")
            items.append(CacheItem(
                key=key, source=str(source), source_files=(str(source),),
                record_path=str(out_root / name / f"{source.stem}.json"),
                arrays=(("points", f"{source.stem}.npy"),),
                settings={"points_per_model": points_per_model, "seed": item_seed, "sampler": _SAMPLER,
                          "normalise": "xy-centre, bottom z=0, diagonal 1", "dtype": "float32"},
                build=_build_model, args=(points_per_model, item_seed)))
    return items


# Model point clouds are sampled once with this seed, whatever a run's training seed, so
# every run (and `cad2scan prepare`) shares one cache.
MODEL_SAMPLE_SEED = 0


def prepare_models(
    cad_root: str | Path,
    cache_dir: str | Path,
    *,
    split: str = "train",
    classes: list[str] | None = None,
    points_per_model: int = 8192,
    max_per_class: int = 0,
    seed: int = MODEL_SAMPLE_SEED,
    workers: int = 1,
    progress: bool = True,
    verify: bool = False,
) -> ModelBank:
    """Sample every mesh of ``classes`` (all when None) once; load the bank.

    Items already in the cache with the same source content and settings are reused;
    ``verify`` re-hashes every source and cached file instead of trusting size + mtime.
    Bad meshes are reported (logged, in the report and the manifest) and skipped; a
    requested class left with no usable model is an error (with ``classes=None`` such a
    class is left out of the bank).
    """
    available = list_cad_models(cad_root, split)
    if classes is not None:
        missing = [c for c in classes if c not in available]
        if missing:
            raise ConfigError(
                f"CAD folder {cad_root} has no {split} meshes for class(es) {missing} "
                f"(found: {', '.join(sorted(available))})"
            )
        available = {c: available[c] for c in classes}
    if max_per_class > 0:
        available = {name: files[:max_per_class] for name, files in available.items()}
    out_root = Path(cache_dir) / "models" / split
    items = model_items(available, out_root, points_per_model, seed)
    records, report = run_items(items, f"models/{split}", out_root, workers=workers, progress=progress, verify=verify)

    bank: dict[str, list[np.ndarray]] = {}
    for item in items:
        if item.key not in records:
            continue
        try:
            points = _load_npy(item.array_path("points"))
        except DataFormatError as error:  # changed on disk since it was checked
            report.failed.append((item.source, f"{error} (re-run prepare)"))
            continue
        bank.setdefault(item.key.split("/", 1)[0], []).append(points.astype(np.float32, copy=False))
    for name in available:
        if name not in bank:
            if classes is not None:
                raise DataFormatError(Path(cad_root) / name / split, "no usable mesh in this class")
            log.warning("class %s has no usable %s mesh; left out", name, split)
    return ModelBank(bank)


# ----------------------------------------------------------------------------- scenes
@dataclass
class SceneSource:
    """One scan on disk: its id, the folder/file to read, and the reader to use.

    kind: ``scannet`` (path = scene folder), ``s3dis`` (path = room folder) or
    ``scannet_npy`` (path = ``*_vert.npy`` export, ``label_path`` = its ``*_sem_label.npy``).
    """

    scene_id: str
    path: Path
    kind: str
    label_path: Path | None = None


def _scannet_ids(root: Path, selection: str, available: list[str], what: str) -> list[str]:
    """Scene ids of a split name (``scannetv2_<name>.txt`` in ``root``), a split file,
    ``all``, or a comma-separated list of scene ids."""
    from cad2scan.io.scannet import SCENE_PATTERN, read_split

    selection = str(selection).strip()
    split_file = Path(selection)
    if not split_file.is_file():
        split_file = root / f"scannetv2_{selection}.txt"
    if split_file.is_file():
        return read_split(split_file)
    if selection == "all":
        return available
    tokens = [t.strip() for t in selection.split(",") if t.strip()]
    if tokens and all(SCENE_PATTERN.match(t) for t in tokens):
        return tokens
    raise ConfigError(
        f"ScanNet {what} selection {selection!r}: no split file {split_file} (give a split name whose "
        f"scannetv2_<name>.txt is in {root}, a split file, 'all', or scene ids like scene0000_00)"
    )


def list_scene_sources(scene_format: str, root: str | Path, selection: str) -> list[SceneSource]:
    """Scenes of a selection.

    scannet: ``root`` holds ``scans/<scene>/`` (or is that folder); selection = split name,
    split file, ``all`` or scene ids. scannet_npy: ``root`` holds ``<scene>_vert[_all].npy``
    (+ ``_sem_label[_all].npy``) exports; same selections. s3dis: ``root`` holds
    ``Area_N/<room>/``; selection = areas, e.g. ``"1,2,3,4,6"``.
    """
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"scene folder {root} does not exist")
    if scene_format == "scannet":
        from cad2scan.io.scannet import SCENE_PATTERN

        scans = root / "scans" if (root / "scans").is_dir() else root
        available = sorted(p.name for p in scans.iterdir() if p.is_dir() and SCENE_PATTERN.match(p.name))
        ids = _scannet_ids(root, selection, available, "scannet")
        sources = [SceneSource(i, scans / i, "scannet") for i in ids]
    elif scene_format == "scannet_npy":
        from cad2scan.io.scannet import list_scannet_exports

        exports = list_scannet_exports(root)
        ids = _scannet_ids(root, selection, sorted(exports), "scannet_npy")
        sources = []
        for scene_id in ids:
            vert, label = exports.get(scene_id, (root / f"{scene_id}_vert.npy", None))
            sources.append(SceneSource(scene_id, vert, "scannet_npy", label))
    elif scene_format == "s3dis":
        from cad2scan.io.s3dis import list_rooms

        try:
            areas = [int(a) for a in str(selection).replace(" ", "").split(",") if a]
        except ValueError:
            raise ConfigError(f"S3DIS areas {selection!r} must be comma-separated numbers, e.g. '1,2,3,4,6'") from None
        sources = [SceneSource(f"{p.parent.name}_{p.name}", p, "s3dis") for p in list_rooms(root, areas)]
    else:
        raise ConfigError(f"unknown scene format {scene_format!r} ({', '.join(SCENE_FORMATS)})")
    if not sources:
        raise ConfigError(f"no scenes found for {scene_format} {selection!r} under {root}")
    missing = [s.path for s in sources if not s.path.exists()]
    if missing:
        raise ConfigError(f"{len(missing)} listed scene(s) are missing, e.g. {missing[0]}")
    return sources


def scene_source_files(source: SceneSource, labels: bool) -> list[Path]:
    """The files that ``read_scene_source(source, labels)`` reads (their content defines the scene)."""
    if source.kind == "scannet":
        from cad2scan.io.scannet import scannet_scene_files

        return scannet_scene_files(source.path, labels=labels)
    if source.kind == "scannet_npy":
        return [Path(source.path)] + ([Path(source.label_path)] if labels and source.label_path else [])
    if source.kind == "s3dis":
        from cad2scan.io.s3dis import s3dis_room_files

        return s3dis_room_files(source.path)  # the room is read from its annotations either way
    raise ConfigError(f"unknown scene format {source.kind!r} ({', '.join(SCENE_FORMATS)})")


def read_scene_source(source: SceneSource, labels: bool) -> dict:
    """Read one scan: ``coord (N,3) float32`` and ``label (N,) int64`` (-1 when unlabelled)."""
    if source.kind == "scannet":
        from cad2scan.io.scannet import read_scannet_scene

        scene = read_scannet_scene(source.path, labels=labels)
    elif source.kind == "scannet_npy":
        from cad2scan.io.scannet import read_scannet_npy

        scene = read_scannet_npy(source.path, source.label_path if labels else None)
    elif source.kind == "s3dis":
        from cad2scan.io.s3dis import read_s3dis_room

        scene = read_s3dis_room(source.path)
    else:
        raise ConfigError(f"unknown scene format {source.kind!r} ({', '.join(SCENE_FORMATS)})")
    coord = np.asarray(scene["coord"], dtype=np.float32)
    label = scene.get("label") if labels else None
    if label is None:
        label = np.full(len(coord), -1, dtype=np.int64)
    return {"coord": coord, "label": np.asarray(label, dtype=np.int64)}


def first_point_per_voxel(coord: np.ndarray, voxel_size: float) -> np.ndarray:
    """(M,) int64 index of the first point of each occupied voxel, voxels in (x, y, z) order.

    coord: (N, 3) float, metres; voxel of a point = floor(coord / voxel_size), as in
    :func:`cad2scan.geometry.voxel.voxelise` (numpy only here: workers need no torch).
    """
    index = np.floor(np.asarray(coord, dtype=np.float64) / float(voxel_size)).astype(np.int64)
    if len(index) == 0:
        return np.zeros(0, dtype=np.int64)
    index -= index.min(axis=0)
    span = index.max(axis=0) + 1
    if float(span[0]) * float(span[1]) * float(span[2]) < 2.0**62:
        keys = (index[:, 0] * span[1] + index[:, 1]) * span[2] + index[:, 2]
        return np.unique(keys, return_index=True)[1].astype(np.int64)
    return np.unique(index, axis=0, return_index=True)[1].astype(np.int64)


def _build_scene(item: CacheItem) -> tuple[dict, dict]:
    """Worker: read one scan, keep one point per voxel (training) -> ({coord, label}, meta)."""
    from cad2scan.geometry.floor import detect_floor_height

    scene_id, path, kind, label_path, labels, voxel_size = item.args
    source = SceneSource(scene_id, Path(path), kind, Path(label_path) if label_path else None)
    scene = read_scene_source(source, labels)
    coord, label = scene["coord"], scene["label"]
    if labels and not (label >= 0).any():
        raise DataFormatError(source.path, "no labels found for this scan (needed for an evaluation scan or a "
                                           "labelled training scan)")
    points_read = len(coord)
    if voxel_size > 0:
        keep = first_point_per_voxel(coord, voxel_size)
        coord, label = coord[keep], label[keep]
    floor_z = detect_floor_height(coord)
    meta = {"scene_id": scene_id, "floor_z": float(floor_z), "points_read": points_read, "points": len(coord)}
    return {"coord": coord, "label": label}, meta


def _scene_tag(labels: bool, voxel_size: float) -> str:
    kind = "labelled" if labels else "unlabelled"
    return f"{kind}-v{voxel_size:g}" if voxel_size > 0 else f"{kind}-full"


def prepare_scenes(
    sources: list[SceneSource],
    cache_dir: str | Path,
    *,
    labels: bool,
    voxel_size: float = 0.0,
    workers: int = 1,
    progress: bool = True,
    verify: bool = False,
) -> list[Path]:
    """Convert scans to the cache. ``voxel_size > 0`` keeps one point per voxel (training).

    Returns the cached scene folders (for :func:`load_scene`) of the scans that could be
    read, in ``sources`` order; bad scans are logged, reported and skipped, and an error
    is raised only when none is usable. Up-to-date scenes are reused (see prepare_models).
    """
    if not sources:
        raise ConfigError("no scans to prepare")
    tag = _scene_tag(labels, voxel_size)
    items_by_kind: dict[str, list[CacheItem]] = {}
    for source in sources:
        out = Path(cache_dir) / "scenes" / source.kind / tag / source.scene_id
        items_by_kind.setdefault(source.kind, []).append(CacheItem(
            key=source.scene_id, source=str(source.path),
            source_files=tuple(str(p) for p in scene_source_files(source, labels)),
            record_path=str(out / "item.json"), arrays=(("coord", "coord.npy"), ("label", "label.npy")),
            settings={"format": source.kind, "labels": labels, "voxel_size": float(voxel_size),
                      "subsample": "first point per voxel" if voxel_size > 0 else "none", "floor": "detect"},
            build=_build_scene,
            args=(source.scene_id, str(source.path), source.kind,
                  str(source.label_path) if source.label_path else None, labels, float(voxel_size))))
    done_keys, failures = set(), []
    for kind, items in items_by_kind.items():
        out_root = Path(cache_dir) / "scenes" / kind / tag
        records, report = run_items(items, f"scenes/{kind}/{tag}", out_root, workers=workers, progress=progress,
                                    verify=verify)
        done_keys |= {(kind, key) for key in records}
        failures += report.failed
    done = [Path(cache_dir) / "scenes" / s.kind / tag / s.scene_id
            for s in sources if (s.kind, s.scene_id) in done_keys]
    if not done:
        reason = failures[0][1] if failures else "unknown error"
        raise DataFormatError(sources[0].path, f"no usable scan among {len(sources)} ({reason})")
    return done


def prepare_scene_split(role: str, scene_format: str, root: str | Path, selection: str, cache_dir: str | Path, *,
                        voxel_size: float, workers: int = 1, progress: bool = True,
                        verify: bool = False) -> list[Path]:
    """Prepare the scans of a split for their role.

    ``role == "train"``: unlabelled, one point per ``voxel_size`` voxel (what mixing needs);
    ``role == "train_labelled"``: labelled, one point per voxel (supervised training);
    ``role == "eval"``: labelled, every point (what point-wise metrics need).
    """
    if role not in SCENE_ROLES:
        raise ValueError(f"role must be one of {', '.join(SCENE_ROLES)}, not {role!r}")
    sources = list_scene_sources(scene_format, root, selection)
    if role in ("train", "train_labelled"):
        return prepare_scenes(sources, cache_dir, labels=role == "train_labelled", voxel_size=voxel_size,
                              workers=workers, progress=progress, verify=verify)
    return prepare_scenes(sources, cache_dir, labels=True, workers=workers, progress=progress, verify=verify)


def _load_npy(path: Path, mmap: bool = False) -> np.ndarray:
    try:
        return np.load(path, mmap_mode="r" if mmap else None, allow_pickle=False)
    except FileNotFoundError:
        raise DataFormatError(path, "cached array missing (re-run prepare)") from None
    except (ValueError, OSError, EOFError) as exc:
        raise DataFormatError(path, f"cached array unreadable ({exc}); re-run prepare") from None


def load_scene(path: str | Path, mmap: bool = False) -> dict:
    """A cached scene: ``coord (N,3) float32``, ``label (N,) int64``, ``floor_z`` float, ``scene_id``.

    path: a scene folder returned by :func:`prepare_scenes` (or its ``item.json``).
    mmap: map the arrays read-only instead of reading them (lazy, shared between
    processes; each mapped array holds an open file until it is released).
    """
    path = Path(path)
    if path.suffix == ".npz":  # a hand-made scene file with the same keys
        with np.load(path) as data:
            return {"coord": data["coord"], "label": data["label"], "floor_z": float(data["floor_z"]),
                    "scene_id": path.stem}
    folder = path.parent if path.name == "item.json" else path
    record = read_record(folder / "item.json")
    if record is None or record.get("status") != "done":
        raise DataFormatError(folder, "not a prepared scene (item.json missing or unfinished); run cad2scan prepare")
    arrays = {name: _load_npy(folder / entry["file"], mmap) for name, entry in record["arrays"].items()}
    meta = record.get("meta") or {}
    return {"coord": arrays["coord"], "label": arrays["label"], "floor_z": float(meta["floor_z"]),
            "scene_id": meta.get("scene_id", folder.name)}


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 1)))


__all__ = [
    "CACHE_VERSION", "ModelBank", "PrepareReport", "SCENE_FORMATS", "SCENE_ROLES", "SceneSource", "collect_reports",
    "default_workers", "first_point_per_voxel", "list_cad_models", "list_scene_sources", "load_scene", "model_items",
    "prepare_models", "prepare_scenes", "read_scene_source", "scene_source_files",
]
