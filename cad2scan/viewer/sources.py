"""Turn what ``cad2scan view`` is given into a :class:`~cad2scan.viewer.page.ViewDocument`.

* a scan (any format ``read_scan`` reads, a ScanNet scene folder or its
  ``*_vh_clean_2.ply``, a prepared scene folder, or a hand-made scene ``.npz``), optionally
  with a checkpoint (prediction + probabilities) and ground truth (ScanNet labels,
  prepared labelled scenes, or ``--labels``);
* a predictions ``.npz`` of ``cad2scan predict`` plus the scan it was predicted on;
* a run folder (``config.yaml`` + ``model.safetensors``): the run's mixed training samples,
  rebuilt exactly as training drew them, and optionally an evaluation scan predicted by
  the run's model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cad2scan.errors import Cad2ScanError, DataFormatError
from cad2scan.io.scans import npz_has_keys, read_point_labels
from cad2scan.viewer.data import ViewScene
from cad2scan.viewer.page import ViewDocument

log = logging.getLogger(__name__)

LABEL_KINDS = ("scene", "class")


@dataclass
class ScanInput:
    """A scan read for viewing.

    coord: (N, 3) float32 metres. color: (N, 3) uint8 or None.
    scene_labels: (N,) int64 dataset label ids (e.g. NYU40), -1 unlabelled, or None.
    class_labels: (N,) int64 class indices (-1 ignored), or None.
    """

    name: str
    coord: np.ndarray
    color: np.ndarray | None = None
    scene_labels: np.ndarray | None = None
    class_labels: np.ndarray | None = None


def is_run_folder(path: str | Path) -> bool:
    path = Path(path)
    return path.is_dir() and (path / "config.yaml").is_file() and (path / "model.safetensors").is_file()


def is_prediction_file(path: str | Path) -> bool:
    """True for an ``.npz`` holding ``probabilities`` and ``classes`` (``cad2scan predict``)."""
    path = Path(path)
    if path.suffix.lower() != ".npz" or not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as data:
            return {"probabilities", "classes"} <= set(data.files)
    except (OSError, ValueError):
        return False


def read_prediction_file(path: str | Path) -> tuple[np.ndarray, list[str]]:
    """(probabilities (N, C) float32, class names) of a ``cad2scan predict`` ``.npz``."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as data:
            missing = [key for key in ("probabilities", "classes") if key not in data.files]
            if missing:
                raise DataFormatError(path, f"not a predictions file: missing key(s) {missing} (has {data.files})")
            probabilities = np.asarray(data["probabilities"], dtype=np.float32)
            names = [str(name) for name in data["classes"]]
    except (OSError, ValueError) as error:
        raise DataFormatError(path, f"unreadable predictions file ({error})") from None
    if probabilities.ndim != 2 or probabilities.shape[1] != len(names):
        raise DataFormatError(path, f"probabilities of shape {probabilities.shape} do not fit {len(names)} classes")
    return probabilities, names


def _scannet_scene_dir(path: Path) -> Path | None:
    """The ScanNet scene folder for a scene folder or its ``<scene>_vh_clean_2.ply``."""
    if path.is_dir() and (path / f"{path.name}_vh_clean_2.ply").is_file():
        return path
    if path.is_file() and path.name == f"{path.parent.name}_vh_clean_2.ply":
        return path.parent
    return None


def load_scan_input(path: str | Path, units: str | None = None, labels: str | Path | None = None,
                    labels_as: str = "scene") -> ScanInput:
    """Read a scan and whatever ground truth comes with it.

    labels: optional per-point label file; ``labels_as`` says whether it holds dataset
    label ids ("scene", mapped through the category set) or class indices ("class").
    """
    from cad2scan.prepare import load_scene

    path = Path(path)
    if labels_as not in LABEL_KINDS:
        raise Cad2ScanError(f"labels_as must be one of {LABEL_KINDS}, got {labels_as!r}")
    scene_dir = _scannet_scene_dir(path)
    if scene_dir is not None:
        from cad2scan.io.scannet import read_scannet_scene

        scene = read_scannet_scene(scene_dir, labels=True)
        result = ScanInput(scene_dir.name, np.asarray(scene["coord"], dtype=np.float32), scene.get("color"),
                           scene.get("label"))
    elif path.is_dir() and (path / "item.json").is_file() or path.name == "item.json":
        scene = load_scene(path)
        scene_labels = np.asarray(scene["label"], dtype=np.int64)
        result = ScanInput(str(scene["scene_id"]), np.asarray(scene["coord"], dtype=np.float32),
                           scene_labels=scene_labels if (scene_labels >= 0).any() else None)
    elif path.is_dir():
        raise DataFormatError(path, "a folder to view must be a run folder (config.yaml + model.safetensors), a "
                                    "ScanNet scene folder or a prepared scene folder (item.json)")
    elif path.suffix.lower() == ".npz" and npz_has_keys(path, ("coord", "label", "floor_z")):
        scene = load_scene(path)
        result = ScanInput(path.stem, np.asarray(scene["coord"], dtype=np.float32),
                           scene_labels=np.asarray(scene["label"], dtype=np.int64))
    else:
        from cad2scan.io.scans import read_scan

        scan = read_scan(path, units=units)
        result = ScanInput(path.stem, scan["coord"], scan.get("color"))
    if len(result.coord) == 0:
        from cad2scan.errors import EmptyScanError

        raise EmptyScanError(path, "scan has no points")
    if labels is not None:
        values = read_point_labels(labels, len(result.coord))
        if labels_as == "scene":
            result.scene_labels, result.class_labels = values, None
        else:
            result.class_labels, result.scene_labels = values, None
    return result


def ground_truth(scan: ScanInput, class_names: list[str], categories=None) -> np.ndarray | None:
    """(N,) int64 class indices (-1 ignored) of the scan, or None without labels.

    categories: the CategorySet that maps dataset label ids to ``class_names``.
    """
    if scan.class_labels is not None:
        labels = scan.class_labels
        if labels.min() < -1 or labels.max() >= len(class_names):
            raise Cad2ScanError(f"{scan.name}: class labels {labels.min()}..{labels.max()} outside -1.."
                                f"{len(class_names) - 1} (classes: {', '.join(class_names)})")
        return labels
    if scan.scene_labels is None:
        return None
    if categories is None:
        raise Cad2ScanError(f"{scan.name}: dataset labels need a category set to map them to classes")
    if list(categories.names) != list(class_names):
        raise Cad2ScanError(f"category set {categories.name!r} classes {categories.names} differ from the "
                            f"model's {class_names}: pass --categories with the model's category set")
    return categories.map_scene_labels(scan.scene_labels)


def scan_scene(scan: ScanInput, class_names: list[str], categories=None, probabilities: np.ndarray | None = None,
               name: str | None = None) -> ViewScene:
    """A ViewScene of a scan with optional probabilities (N, C) and its ground truth."""
    prediction = None
    if probabilities is not None:
        if len(probabilities) != len(scan.coord):
            raise Cad2ScanError(f"{scan.name}: {len(probabilities)} predicted points but the scan has "
                                f"{len(scan.coord)}: give the scan the predictions were made on")
        prediction = probabilities.argmax(axis=1)
    return ViewScene(name or scan.name, scan.coord, prediction=prediction,
                     ground_truth=ground_truth(scan, class_names, categories), probabilities=probabilities,
                     color=scan.color)


def predict_with_checkpoint(checkpoint: str | Path, coord: np.ndarray, device: str = "auto",
                            max_voxels: int | None = 2_000_000):
    """(probabilities (N, C) float32, class names, the checkpoint's RunConfig)."""
    from cad2scan.predict import predict_scan, select_device
    from cad2scan.train.checkpoint import load_checkpoint

    torch_device = select_device(device)
    loaded = load_checkpoint(checkpoint, torch_device)
    probabilities, report = predict_scan(loaded.net, coord, loaded.config.data.voxel_size, torch_device,
                                         max_voxels=max_voxels or None)
    log.info("predicted %d points (%d voxels) in %.1f s", report["points"], report["voxels"], report["seconds"])
    return probabilities, list(loaded.class_names), loaded.config


def scan_document(target: str | Path, *, checkpoint: str | Path | None = None, scan: str | Path | None = None,
                  categories: str | None = None, labels: str | Path | None = None, labels_as: str = "scene",
                  units: str | None = None, device: str = "auto", max_voxels: int | None = 2_000_000,
                  mode: str = "", class_name: str = "") -> ViewDocument:
    """The view of one scan (``target``) or of a predictions ``.npz`` (``target``) with its ``scan``.

    categories: category set (preset name or YAML) giving the classes without a checkpoint
    and mapping dataset label ids (default: the checkpoint's, else "scannet11").
    """
    from cad2scan.classes import load_category_set

    target = Path(target)
    notes: list[str] = []
    if is_prediction_file(target):
        if scan is None:
            raise Cad2ScanError(f"{target}: a predictions file holds no coordinates: give the scan it was "
                                f"predicted on with --scan")
        if checkpoint is not None:
            raise Cad2ScanError("give either a predictions .npz or --checkpoint, not both")
        probabilities, class_names = read_prediction_file(target)
        scan_input = load_scan_input(scan, units, labels, labels_as)
        category_set = load_category_set(categories) if categories else _matching_categories(class_names)
        notes.append(f"predictions: {target.name}")
    else:
        if scan is not None:
            raise Cad2ScanError("--scan is for a predictions .npz or a run folder; the scan is the target here")
        scan_input = load_scan_input(target, units, labels, labels_as)
        if checkpoint is not None:
            probabilities, class_names, config = predict_with_checkpoint(checkpoint, scan_input.coord, device,
                                                                         max_voxels)
            category_set = load_category_set(categories or config.data.categories)
            notes.append(f"model: {Path(checkpoint).name}")
        else:
            probabilities = None
            category_set = load_category_set(categories or "scannet11")
            class_names = list(category_set.names)
    view = scan_scene(scan_input, class_names, category_set if scan_input.scene_labels is not None else None,
                      probabilities)
    if view.ground_truth is not None:
        notes.append("ground truth: labelled points")
    return ViewDocument(f"cad2scan: {scan_input.name}", class_names, [view], mode=mode, class_name=class_name,
                        notes=notes)


def _matching_categories(class_names: list[str]):
    """The scannet11 category set when its names match (to map ScanNet labels), else None."""
    from cad2scan.classes import load_category_set

    default = load_category_set("scannet11")
    return default if list(default.names) == list(class_names) else None


# ----------------------------------------------------------------- training samples
def sample_scene(segments: list[dict], name: str, gap: float = 0.3) -> ViewScene:
    """One ViewScene of a training sample's segments (``SampleBuilder.build`` output).

    Several segments (the ``single`` recipe: one model each) are laid side by side along
    x with ``gap`` metres between them; model ids are renumbered to stay unique.
    """
    coords, labels, synthetic, model_ids = [], [], [], []
    cursor, next_id = 0.0, 0
    for segment in segments:
        coord = np.asarray(segment["coord"], dtype=np.float64)
        if len(coord) == 0:
            continue
        if len(segments) > 1:
            coord = coord - [coord[:, 0].min() - cursor, 0.0, 0.0]
            cursor = coord[:, 0].max() + gap
        ids = np.asarray(segment["model_id"], dtype=np.int64)
        renumbered = np.where(ids >= 0, ids + next_id, -1)
        next_id = max(next_id, int(renumbered.max()) + 1)
        coords.append(coord)
        labels.append(np.asarray(segment["label"], dtype=np.int64))
        synthetic.append(np.asarray(segment["is_synthetic"], dtype=bool))
        model_ids.append(renumbered)
    if not coords:
        raise Cad2ScanError(f"{name}: the training sample has no points")
    model_id = np.concatenate(model_ids)
    label = np.concatenate(labels)
    model_labels = {int(m): int(np.bincount(label[model_id == m][label[model_id == m] >= 0]).argmax())
                    for m in np.unique(model_id) if m >= 0 and (label[model_id == m] >= 0).any()}
    return ViewScene(name, np.concatenate(coords).astype(np.float32), ground_truth=label, model_id=model_id,
                     model_labels=model_labels, is_synthetic=np.concatenate(synthetic))


def training_samples(run_dir: str | Path, count: int, progress: bool = False) -> tuple[list[str], list[ViewScene]]:
    """The first ``count`` training samples of a run, as training built them.

    Sample ``i`` is slot ``i % B`` of step ``i // B`` (B = train.batch_size), drawn from
    ``default_rng([train.seed, step, slot])`` over the run's prepared model bank and scans
    (prepared now when the cache lacks them). Returns (class names, scenes).
    """
    from cad2scan.config import load_config
    from cad2scan.train.data import BatchStream
    from cad2scan.train.loop import prepare_training_data, sample_builder

    run_dir = Path(run_dir)
    if count < 1:
        raise Cad2ScanError(f"--samples must be a positive number, got {count}")
    cfg = load_config(run_dir / "config.yaml")
    data = prepare_training_data(cfg, with_eval=False, progress=progress)
    builder = sample_builder(cfg, data)
    batch = cfg.train.batch_size
    try:
        stream = BatchStream(builder, data.train_scenes, batch, cfg.data.voxel_size, cfg.train.seed,
                             total_steps=(count - 1) // batch + 1)
    except ValueError as error:
        raise Cad2ScanError(f"{run_dir}: cannot rebuild training samples: {error}") from None
    scenes = []
    for index in range(count):
        step, slot = divmod(index, batch)
        segments = stream.build_sample(step, slot)
        scenes.append(sample_scene(segments, f"sample {index} (step {step}, slot {slot})"))
    return list(data.categories.names), scenes


def run_document(run_dir: str | Path, *, samples: int = 0, scan: str | Path | None = None,
                 labels: str | Path | None = None, labels_as: str = "scene", units: str | None = None,
                 device: str = "auto", max_voxels: int | None = 2_000_000, mode: str = "", class_name: str = "",
                 progress: bool = False) -> ViewDocument:
    """The view of a run folder: ``samples`` training samples and/or one ``scan`` predicted by the run's model."""
    from cad2scan.classes import load_category_set
    from cad2scan.config import load_config

    run_dir = Path(run_dir)
    if samples <= 0 and scan is None:
        raise Cad2ScanError(f"{run_dir} is a run folder: give --samples N (training samples) and/or --scan FILE")
    cfg = load_config(run_dir / "config.yaml")
    category_set = load_category_set(cfg.data.categories)
    class_names = list(category_set.names)
    scenes: list[ViewScene] = []
    notes = [f"run: {run_dir.name} (align.mode={cfg.align.mode})"]
    if scan is not None:
        scan_input = load_scan_input(scan, units, labels, labels_as)
        probabilities, model_names, _ = predict_with_checkpoint(run_dir / "model.safetensors", scan_input.coord,
                                                                device, max_voxels)
        if model_names != class_names:
            raise Cad2ScanError(f"{run_dir}: model classes {model_names} differ from the config's {class_names}")
        scenes.append(scan_scene(scan_input, class_names, category_set, probabilities))
    if samples > 0:
        names, sample_scenes = training_samples(run_dir, samples, progress=progress)
        scenes.extend(sample_scenes)
    return ViewDocument(f"cad2scan: {run_dir.name}", class_names, scenes, mode=mode, class_name=class_name,
                        notes=notes)


def view_document(target: str | Path, **options) -> ViewDocument:
    """Dispatch: run folder -> :func:`run_document`, otherwise :func:`scan_document`.

    options: those of the chosen function; ``samples`` is only for run folders.
    """
    if is_run_folder(target):
        if options.pop("checkpoint", None) is not None:
            raise Cad2ScanError(f"{target} is a run folder: its model.safetensors is used; drop --checkpoint")
        options.pop("categories", None)  # the run's own category set applies
        return run_document(target, **options)
    if options.pop("samples", 0):
        raise Cad2ScanError(f"--samples needs a run folder (config.yaml + model.safetensors), not {target}")
    options.pop("progress", None)
    return scan_document(target, **options)
