"""Prepare once, train many times: CAD meshes -> model point cache, scans -> scene cache.

Cache layout (every file written atomically, so a crash leaves no half-written item and a
re-run skips what is finished)::

    <cache>/models/<split>/<class>/<name>.npy     (P, 3) float16, normalised model points
    <cache>/scenes/<kind>-v<voxel>/<scene>.npz    coord (N,3) float32, label (N,) int64, floor_z
    <cache>/.../manifest.json                     source paths, sizes, settings, version

Training scenes are stored one point per voxel (the network sees voxels, and the loss is on
synthetic points only), evaluation scenes keep every point and its label.
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cad2scan.errors import Cad2ScanError, ConfigError, DataFormatError
from cad2scan.io.atomic import atomic_open, atomic_save_npz, atomic_write_text

CACHE_VERSION = 1
log = logging.getLogger(__name__)


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


def _sample_model(task: tuple[str, str, int, int]) -> tuple[str, str | None]:
    """Worker: read one mesh, Poisson-disk sample it, normalise, save. Returns (out, error)."""
    from cad2scan.align.transforms import normalise_model
    from cad2scan.geometry.sampling import poisson_disk_sample
    from cad2scan.io.off import read_off

    source, out_path, points_per_model, seed = task
    try:
        mesh = read_off(source)
        points = poisson_disk_sample(mesh, points_per_model, np.random.default_rng(seed), name=source)
        points = normalise_model(points).astype(np.float16)
        with atomic_open(out_path, "wb") as handle:
            np.save(handle, points)
        return out_path, None
    except Cad2ScanError as error:
        return out_path, str(error)


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


def _run_parallel(function, tasks: list, workers: int, desc: str, progress: bool) -> list:
    bar = tqdm(total=len(tasks), desc=desc, unit="item", disable=not progress or not tasks, dynamic_ncols=True)
    results = []
    if workers > 1 and len(tasks) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            for result in pool.map(function, tasks, chunksize=max(1, len(tasks) // (workers * 8))):
                results.append(result)
                bar.update()
    else:
        for task in tasks:
            results.append(function(task))
            bar.update()
    bar.close()
    return results


def prepare_models(
    cad_root: str | Path,
    cache_dir: str | Path,
    *,
    split: str = "train",
    classes: list[str] | None = None,
    points_per_model: int = 8192,
    max_per_class: int = 0,
    seed: int = 0,
    workers: int = 1,
    progress: bool = True,
) -> ModelBank:
    """Sample every mesh of ``classes`` (all when None) once; load the bank.

    Bad meshes are reported (logged, listed in the manifest) and skipped; a class left with
    no usable model is an error.
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
    out_root = Path(cache_dir) / "models" / split
    tasks, outputs = [], {}
    for name, files in available.items():
        if max_per_class > 0:
            files = files[:max_per_class]
        for source in files:
            out_path = out_root / name / f"{source.stem}.npy"
            outputs.setdefault(name, []).append(out_path)
            if not out_path.is_file():
                tasks.append((str(source), str(out_path), points_per_model, _item_seed(seed, f"{name}/{source.name}")))
    results = _run_parallel(_sample_model, tasks, workers, "sampling CAD models", progress)
    failed = {out: error for out, error in results if error}
    for error in failed.values():
        log.warning("skipped a CAD model: %s", error)
    bank = {}
    for name, paths in outputs.items():
        arrays = [np.load(p).astype(np.float32) for p in paths if str(p) not in failed and p.is_file()]
        if not arrays:
            raise DataFormatError(Path(cad_root) / name / split, "no usable mesh in this class")
        bank[name] = arrays
    manifest = {
        "version": CACHE_VERSION,
        "cad_root": str(Path(cad_root).resolve()),
        "split": split,
        "points_per_model": points_per_model,
        "seed": seed,
        "counts": {k: len(v) for k, v in bank.items()},
        "skipped": sorted(failed.values()),
    }
    atomic_write_text(out_root / "manifest.json", json.dumps(manifest, indent=2))
    return ModelBank(bank)


# ----------------------------------------------------------------------------- scenes
@dataclass
class SceneSource:
    """One scan on disk: its id, the folder/file to read, and the reader to use."""

    scene_id: str
    path: Path
    kind: str  # scannet | s3dis


def list_scene_sources(scene_format: str, root: str | Path, selection: str) -> list[SceneSource]:
    """Scenes of a split (ScanNet: split name or file) or of areas (S3DIS: ``"1,2,3,4,6"``)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"scene folder {root} does not exist")
    if scene_format == "scannet":
        from cad2scan.io.scannet import read_split

        split_file = Path(selection)
        if not split_file.is_file():
            split_file = root / f"scannetv2_{selection}.txt"
        if split_file.is_file():
            ids = read_split(split_file)
        elif selection == "all":
            ids = sorted(p.name for p in (root / "scans").iterdir() if p.is_dir())
        else:
            raise ConfigError(f"ScanNet split {selection!r}: no file {split_file} (give a split file or 'all')")
        sources = [SceneSource(i, root / "scans" / i, "scannet") for i in ids]
    elif scene_format == "s3dis":
        from cad2scan.io.s3dis import list_rooms

        try:
            areas = [int(a) for a in str(selection).replace(" ", "").split(",") if a]
        except ValueError:
            raise ConfigError(f"S3DIS areas {selection!r} must be comma-separated numbers, e.g. '1,2,3,4,6'") from None
        sources = [SceneSource(f"{p.parent.name}_{p.name}", p, "s3dis") for p in list_rooms(root, areas)]
    else:
        raise ConfigError(f"unknown scene format {scene_format!r} (scannet, s3dis)")
    if not sources:
        raise ConfigError(f"no scenes found for {scene_format} {selection!r} under {root}")
    missing = [s.path for s in sources if not s.path.exists()]
    if missing:
        raise ConfigError(f"{len(missing)} listed scene(s) are missing, e.g. {missing[0]}")
    return sources


def read_scene_source(source: SceneSource, labels: bool) -> dict:
    """Read one scan: ``coord (N,3) float32`` and ``label (N,) int64`` (-1 when unlabelled)."""
    if source.kind == "scannet":
        from cad2scan.io.scannet import read_scannet_scene

        scene = read_scannet_scene(source.path, labels=labels)
    else:
        from cad2scan.io.s3dis import read_s3dis_room

        scene = read_s3dis_room(source.path)
    coord = np.asarray(scene["coord"], dtype=np.float32)
    label = scene.get("label") if labels else None
    if label is None:
        label = np.full(len(coord), -1, dtype=np.int64)
    return {"coord": coord, "label": np.asarray(label, dtype=np.int64)}


def _prepare_scene(task: tuple[SceneSource, str, bool, float]) -> tuple[str, str | None]:
    from cad2scan.geometry.floor import detect_floor_height
    from cad2scan.geometry.voxel import voxelise

    source, out_path, labels, voxel_size = task
    try:
        scene = read_scene_source(source, labels)
        coord, label = scene["coord"], scene["label"]
        if voxel_size > 0:  # one point per voxel (the first), for training scenes
            grid = voxelise(coord, voxel_size)
            first = np.full(len(grid.voxel_coords), len(coord), dtype=np.int64)
            np.minimum.at(first, grid.point_to_voxel, np.arange(len(coord)))
            coord, label = coord[first], label[first]
        floor_z = detect_floor_height(coord)
        atomic_save_npz(out_path, coord=coord, label=label, floor_z=np.float32(floor_z))
        return out_path, None
    except Cad2ScanError as error:
        return out_path, str(error)


def prepare_scenes(
    sources: list[SceneSource],
    cache_dir: str | Path,
    *,
    labels: bool,
    voxel_size: float = 0.0,
    workers: int = 1,
    progress: bool = True,
) -> list[Path]:
    """Convert scans to the cache. ``voxel_size > 0`` keeps one point per voxel (training).

    Returns the cached files of the scenes that could be read; bad scans are logged and
    skipped, and an error is raised only when none is usable.
    """
    kind = "labelled" if labels else "unlabelled"
    tag = f"{kind}-v{voxel_size:g}" if voxel_size > 0 else f"{kind}-full"
    out_root = Path(cache_dir) / "scenes" / tag
    tasks, outputs = [], []
    for source in sources:
        out_path = out_root / f"{source.scene_id}.npz"
        outputs.append(out_path)
        if not out_path.is_file():
            tasks.append((source, str(out_path), labels, voxel_size))
    results = _run_parallel(_prepare_scene, tasks, workers, f"preparing {kind} scans", progress)
    failed = {out: error for out, error in results if error}
    for error in failed.values():
        log.warning("skipped a scan: %s", error)
    done = [p for p in outputs if str(p) not in failed and p.is_file()]
    if not done:
        raise Cad2ScanError(f"no usable scan among {len(sources)} ({next(iter(failed.values()), 'unknown error')})")
    manifest = {
        "version": CACHE_VERSION,
        "labels": labels,
        "voxel_size": voxel_size,
        "scenes": [{"id": s.scene_id, "source": str(s.path)} for s in sources],
        "skipped": sorted(failed.values()),
    }
    atomic_write_text(out_root / "manifest.json", json.dumps(manifest, indent=2))
    return done


def load_scene(path: str | Path) -> dict:
    """A cached scene: ``coord (N,3) float32``, ``label (N,) int64``, ``floor_z`` float."""
    with np.load(path) as data:
        return {"coord": data["coord"], "label": data["label"], "floor_z": float(data["floor_z"]),
                "scene_id": Path(path).stem}


def default_workers() -> int:
    return max(1, min(8, (os.cpu_count() or 1)))

