"""Write the embedded demo dataset to disk, in the real datasets' on-disk formats.

Layout under ``out_dir``::

    ModelNet/<class>/{train,test}/<class>_NNNN.off       CAD-style models (ModelNet40 layout)
    ScanNet/scans/sceneNNNN_00/sceneNNNN_00_vh_clean_2.ply          every room (no labels)
    ScanNet/scans/sceneNNNN_00/sceneNNNN_00_vh_clean_2.labels.ply   every room (NYU40 ids)
    ScanNet/scannetv2_train.txt   training room ids
    ScanNet/scannetv2_val.txt     evaluation room ids

As in real ScanNet, the training rooms are labelled on disk too: referring transfer
learning never reads their labels (it prepares them unlabelled); only the supervised and
fine-tuning experiments (``train.objective: supervised``) do.
    manifest.json                 written last: its presence marks a complete dataset

Everything follows from ``seed``: each model and each room draws from its own
generator keyed by (seed, kind, index), so the same seed gives byte-identical files.
"""

from __future__ import annotations

import json
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cad2scan import __version__
from cad2scan.io.atomic import atomic_write_text
from cad2scan.io.off import write_off
from cad2scan.io.ply import write_ply
from cad2scan.synth.cad_shapes import ALL_CLASSES, NEGATIVE_CLASSES, TARGET_CLASSES, make_cad_model
from cad2scan.synth.rooms import ROOM_TYPES, make_room
from cad2scan.synth.scanner import ScannerConfig, scan_room

FORMAT_VERSION = 2  # 2: training rooms have .labels.ply too
_KIND_MODEL, _KIND_TRAIN_ROOM, _KIND_EVAL_ROOM = 0, 1, 2


def model_rng(seed: int, class_name: str, index: int) -> np.random.Generator:
    """Generator of model ``index`` of ``class_name`` (independent of the class list)."""
    return np.random.default_rng([seed, _KIND_MODEL, zlib.crc32(class_name.encode()), index])


def room_rng(seed: int, evaluation: bool, index: int) -> np.random.Generator:
    """Generator of training room ``index`` or evaluation room ``index`` (disjoint streams)."""
    return np.random.default_rng([seed, _KIND_EVAL_ROOM if evaluation else _KIND_TRAIN_ROOM, index])


def _write_models(root: Path, seed: int, n_train: int, n_test: int, bar) -> dict[str, dict[str, int]]:
    counts = {}
    for name in ALL_CLASSES:
        for i in range(n_train + n_test):
            split = "train" if i < n_train else "test"
            mesh = make_cad_model(name, model_rng(seed, name, i))
            write_off(root / name / split / f"{name}_{i + 1:04d}.off", mesh)
            bar.update(1)
        counts[name] = {"train": n_train, "test": n_test}
    return counts


def _write_room(scans: Path, scene_id: str, scan: dict) -> None:
    """The room's mesh vertices and, beside them, the same vertices with their NYU40 labels."""
    folder = scans / scene_id
    coord, color = scan["coord"], scan["color"]
    alpha = np.full(len(coord), 255, dtype=np.uint8)
    write_ply(folder / f"{scene_id}_vh_clean_2.ply", coord, colors=color, properties={"alpha": alpha}, binary=True)
    write_ply(
        folder / f"{scene_id}_vh_clean_2.labels.ply", coord, colors=color,
        properties={"alpha": alpha, "label": scan["label"].astype(np.uint16)}, binary=True,
    )


def generate_demo_dataset(
    out_dir: str | Path,
    seed: int = 0,
    models_per_class_train: int = 8,
    models_per_class_test: int = 2,
    train_rooms: int = 12,
    eval_rooms: int = 6,
    scanner: ScannerConfig | None = None,
    progress: bool = True,
) -> dict:
    """Generate the CAD library and the scanned rooms into ``out_dir``; return the manifest.

    Room types cycle through ROOM_TYPES in each split, so ``eval_rooms >= 6`` covers every
    type. Every room is written with a ``.labels.ply`` holding NYU40 ids (as in ScanNet, where
    the training scans are labelled too); the evaluation rooms come from other seeds. An existing ``manifest.json`` is
    removed first and rewritten last, so an interrupted run leaves no manifest.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    manifest_path.unlink(missing_ok=True)
    scanner = scanner or ScannerConfig()
    n_models = len(ALL_CLASSES) * (models_per_class_train + models_per_class_test)
    bar = tqdm(total=n_models + train_rooms + eval_rooms, desc="demo dataset", unit="item", disable=not progress)

    model_counts = _write_models(out / "ModelNet", seed, models_per_class_train, models_per_class_test, bar)

    scans = out / "ScanNet" / "scans"
    scenes: dict[str, dict] = {}
    eval_label_points: Counter = Counter()
    splits: dict[str, list[str]] = {"train": [], "val": []}
    jobs = [(False, i) for i in range(train_rooms)] + [(True, i) for i in range(eval_rooms)]
    for number, (evaluation, index) in enumerate(jobs):
        scene_id = f"scene{number:04d}_00"
        room_type = ROOM_TYPES[index % len(ROOM_TYPES)]
        rng = room_rng(seed, evaluation, index)
        room = make_room(rng, room_type)
        scan = scan_room(room, rng, scanner)
        _write_room(scans, scene_id, scan)
        labels, counts = np.unique(scan["label"], return_counts=True)
        scenes[scene_id] = {
            "split": "val" if evaluation else "train",
            "room_type": room_type,
            "size_m": [round(float(s), 3) for s in room.size],
            "points": int(len(scan["coord"])),
            "label_points": {str(int(l)): int(c) for l, c in zip(labels, counts)},
        }
        if evaluation:
            eval_label_points.update({int(l): int(c) for l, c in zip(labels, counts)})
        splits["val" if evaluation else "train"].append(scene_id)
        bar.update(1)
    bar.close()

    atomic_write_text(out / "ScanNet" / "scannetv2_train.txt", "".join(f"{s}\n" for s in splits["train"]))
    atomic_write_text(out / "ScanNet" / "scannetv2_val.txt", "".join(f"{s}\n" for s in splits["val"]))

    manifest = {
        "generator": "cad2scan.synth",
        "format_version": FORMAT_VERSION,
        "versions": {"cad2scan": __version__, "numpy": np.__version__},
        "seed": seed,
        "classes": {"targets": list(TARGET_CLASSES), "negatives": list(NEGATIVE_CLASSES)},
        "models": {
            "root": "ModelNet",
            "per_class": model_counts,
            "total": n_models,
        },
        "scenes": {
            "root": "ScanNet",
            "label_space": "nyu40",
            "train": splits["train"],
            "val": splits["val"],
            "info": scenes,
            "val_label_points": {str(k): v for k, v in sorted(eval_label_points.items())},
        },
        "scanner": scanner.to_dict(),
    }
    atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest
