"""``cad2scan demo``: generate the embedded dataset, train three recipes, compare them.

baseline: size-matched single CAD models, no PDA, no FA (the paper's baseline)
pda:      CAD models mixed into unlabelled scans (physical data alignment), no FA
pda_fa:   PDA + convex-hull feature alignment (the full method)

All three are evaluated on held-out labelled rooms that no training step saw.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from cad2scan.config import RunConfig, config_from_dict, config_to_dict, load_raw_config, merge_dicts, parse_overrides
from cad2scan.eval.evaluate import evaluate_scenes
from cad2scan.eval.tables import format_table, write_results_json
from cad2scan.io.predictions import write_prediction_ply
from cad2scan.train.checkpoint import load_checkpoint
from cad2scan.train.loop import prepare_training_data, setup_runtime, train

log = logging.getLogger(__name__)

METHODS = {
    "baseline": ["align.mode=single", "model.use_hull=false"],
    "pda": ["align.mode=pda", "model.use_hull=false"],
    "pda_fa": ["align.mode=pda", "model.use_hull=true"],
}


def demo_data_paths(out_dir: str | Path) -> dict[str, str]:
    """The ``data`` keys pointing a config at the demo dataset generated under ``out_dir``."""
    out_dir = Path(out_dir)
    return {"cad_root": str(out_dir / "data" / "ModelNet"), "scene_root": str(out_dir / "data" / "ScanNet"),
            "cache_dir": str(out_dir / "cache")}


def demo_config(out_dir: Path, method: str, overrides: list[str] | None = None) -> RunConfig:
    """The demo preset pointed at the generated data, with a method's switches applied."""
    raw = merge_dicts(load_raw_config("demo"), {"name": method, "data": demo_data_paths(out_dir)})
    raw = merge_dicts(raw, parse_overrides(METHODS[method] + list(overrides or [])))
    return config_from_dict(raw, f"demo ({method})")


# ``--smoke``: a tiny dataset and a few steps of a narrow network, to check an install
# (and for tests). Its numbers mean nothing.
SMOKE_DATASET = {"models_per_class_train": 1, "models_per_class_test": 1, "train_rooms": 2, "eval_rooms": 2}
SMOKE_OVERRIDES = ["train.epochs=1", "train.steps_per_epoch=2", "train.batch_size=1",
                   "model.backbone.width_scale=0.25", "model.hull.num_prototypes=16", "data.points_per_model=1024"]


def ensure_demo_dataset(out_dir: str | Path, seed: int, smoke: bool = False, progress: bool = True) -> None:
    """Generate the demo dataset into ``out_dir/data`` unless a finished one of the current
    format is there (one of an older format is generated again: e.g. format 1 had no labels
    for the training rooms, which the supervised rows need)."""
    import shutil

    from cad2scan.synth.generate import FORMAT_VERSION, generate_demo_dataset

    data_dir = Path(out_dir) / "data"
    manifest = data_dir / "manifest.json"
    if manifest.is_file():
        try:
            version = json.loads(manifest.read_text()).get("format_version")
        except (OSError, ValueError):
            version = None
        if version == FORMAT_VERSION:
            log.info("reusing the demo dataset in %s", data_dir)
            return
        log.warning("the demo dataset in %s has format %s, not %d: generating it again", data_dir, version,
                    FORMAT_VERSION)
        shutil.rmtree(data_dir)
    log.info("generating the demo dataset in %s (seed %d)", data_dir, seed)
    generate_demo_dataset(data_dir, seed=seed, progress=progress, **(SMOKE_DATASET if smoke else {}))


def run_demo(out_dir: str | Path, seed: int = 0, methods: list[str] | None = None,
             overrides: list[str] | None = None, progress: bool = True, smoke: bool = False) -> dict:
    """Run the whole demo into ``out_dir``; returns the ``results.json`` content."""
    out_dir = Path(out_dir)
    methods = methods or list(METHODS)
    overrides = [f"train.seed={seed}"] + (SMOKE_OVERRIDES if smoke else []) + list(overrides or [])
    started = time.perf_counter()
    ensure_demo_dataset(out_dir, seed, smoke, progress)
    generated = time.perf_counter()

    # Models, unlabelled and labelled scans are prepared once and shared by all methods.
    data = prepare_training_data(demo_config(out_dir, "pda", overrides), progress=progress)

    results, timings = {}, {"generate_s": round(generated - started, 1)}
    for method in methods:
        cfg = demo_config(out_dir, method, overrides)
        device = setup_runtime(cfg)
        run_dir = out_dir / "runs" / method
        result = train(cfg, run_dir, data=data, progress=progress)
        net = load_checkpoint(result.checkpoint, device).net
        shown = {Path(p).name for p in data.eval_scenes[:2]}  # the first two rooms are written as coloured PLYs

        def write_predictions(scene: dict, probabilities, method: str = method) -> None:
            if scene["scene_id"] in shown:
                write_prediction_ply(out_dir / "predictions" / f"{scene['scene_id']}_{method}.ply", scene["coord"],
                                     probabilities.argmax(axis=1), data.categories.num_classes)

        results[method] = evaluate_scenes(net, data.eval_scenes, data.categories, cfg.data.voxel_size, device,
                                          progress=progress, on_scene=write_predictions)
        timings[f"{method}_train_s"] = round(result.seconds, 1)
        (run_dir / "eval.json").write_text(json.dumps(results[method].to_dict(), indent=2))
        log.info("%s: AmAP %.2f mIoU %.2f", method, results[method].amap, results[method].miou)

    timings["total_s"] = round(time.perf_counter() - started, 1)
    table = format_table(results, data.categories.target_names)
    print("\nPer-class AP (%) on the held-out demo rooms\n" + table)
    meta = {"seed": seed, "smoke": smoke, "timings": timings, "eval_scenes": [p.stem for p in data.eval_scenes],
            "config": config_to_dict(demo_config(out_dir, methods[0], overrides))}
    write_results_json(out_dir / "results.json", results, meta=meta)
    return json.loads((out_dir / "results.json").read_text())
