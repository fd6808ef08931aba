"""The training loop: one readable function from a config to a checkpoint."""

from __future__ import annotations

import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from cad2scan.align.samples import SampleBuilder
from cad2scan.classes import CategorySet, SizePriors, load_category_set, load_size_priors
from cad2scan.config import RunConfig, save_config
from cad2scan.errors import ConfigError
from cad2scan.model.anchors import anchor_loss
from cad2scan.model.net import RTLNet
from cad2scan.model.backbone import make_sparse_input
from cad2scan.predict import select_device
from cad2scan.prepare import (ModelBank, default_workers, list_cad_models, list_scene_sources, prepare_models,
                              prepare_scenes)
from cad2scan.train.checkpoint import save_checkpoint
from cad2scan.train.data import BatchStream, make_loader, seed_everything

log = logging.getLogger(__name__)


@dataclass
class TrainingData:
    """Everything prepared from disk that a run trains and evaluates on."""

    categories: CategorySet
    priors: SizePriors
    bank: ModelBank
    train_scenes: list[Path]
    eval_scenes: list[Path] = field(default_factory=list)


def cache_dir_for(cfg: RunConfig) -> Path:
    if cfg.data.cache_dir:
        return Path(cfg.data.cache_dir)
    if not cfg.data.scene_root:
        raise ConfigError("config key data.cache_dir (or data.scene_root) must be set")
    return Path(cfg.data.scene_root).resolve().parent / "cad2scan_cache"


def prepare_training_data(cfg: RunConfig, *, with_eval: bool = True, progress: bool = True,
                          workers: int | None = None) -> TrainingData:
    """Prepare (or reuse from the cache) models, unlabelled training scans and eval scans."""
    if not cfg.data.cad_root:
        raise ConfigError("config key data.cad_root must name the CAD model folder")
    workers = default_workers() if workers is None else workers
    categories = load_category_set(cfg.data.categories)
    priors = load_size_priors(cfg.data.size_priors)
    cache = cache_dir_for(cfg)
    available = list(list_cad_models(cfg.data.cad_root, cfg.data.cad_split))
    targets = sorted({name for c in categories.classes for name in c.cad if name in available})
    classes = targets + categories.negative_cad_classes(available)
    bank = prepare_models(cfg.data.cad_root, cache, split=cfg.data.cad_split, classes=classes,
                          points_per_model=cfg.data.points_per_model, max_per_class=cfg.data.max_models_per_class,
                          seed=0, workers=workers, progress=progress)  # fixed: one cache for all runs
    train_scenes: list[Path] = []
    if cfg.align.mode == "pda":
        sources = list_scene_sources(cfg.data.scene_format, cfg.data.scene_root, cfg.data.train_scenes)
        train_scenes = prepare_scenes(sources, cache, labels=False, voxel_size=cfg.data.voxel_size,
                                      workers=workers, progress=progress)
    eval_scenes: list[Path] = []
    if with_eval and cfg.data.eval_scenes:
        sources = list_scene_sources(cfg.data.scene_format, cfg.data.scene_root, cfg.data.eval_scenes)
        eval_scenes = prepare_scenes(sources, cache, labels=True, workers=workers, progress=progress)
    return TrainingData(categories, priors, bank, train_scenes, eval_scenes)


def setup_runtime(cfg: RunConfig) -> torch.device:
    """Threads, seeds and device, set deliberately (no silent CPU over-subscription)."""
    threads = cfg.train.num_threads or (os.cpu_count() or 1)
    torch.set_num_threads(threads)
    seed_everything(cfg.train.seed, cfg.train.deterministic)
    return select_device(cfg.train.device)


def attach_file_log(run_dir: Path) -> logging.Handler:
    handler = logging.FileHandler(run_dir / "train.log", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("cad2scan").addHandler(handler)
    logging.getLogger("cad2scan").setLevel(logging.INFO)
    return handler


@dataclass
class TrainResult:
    checkpoint: Path
    steps: int
    seconds: float
    final_loss: float


def train(cfg: RunConfig, run_dir: str | Path, data: TrainingData | None = None, progress: bool = True) -> TrainResult:
    """Train ``cfg`` and write ``run_dir/{config.yaml, train.log, metrics.jsonl, model.safetensors}``."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    handler = attach_file_log(run_dir)
    try:
        save_config(cfg, run_dir / "config.yaml")
        device = setup_runtime(cfg)
        data = data or prepare_training_data(cfg, with_eval=False, progress=progress)
        builder = SampleBuilder(data.bank.points, data.categories, data.priors, cfg.align.mode,
                                cfg.align.augment, cfg.align.mix, cfg.align.negatives_per_sample)
        steps_per_epoch = cfg.train.steps_per_epoch or max(1, math.ceil(len(data.train_scenes) / cfg.train.batch_size))
        total_steps = cfg.train.epochs * steps_per_epoch
        stream = BatchStream(builder, data.train_scenes, cfg.train.batch_size, cfg.data.voxel_size,
                             cfg.train.seed, total_steps)
        loader = make_loader(stream, cfg.train.num_workers, pin_memory=device.type == "cuda")

        net = RTLNet(cfg.model, data.categories.num_classes).to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        log.info("run %s: %d steps (%d epochs x %d), %d parameters, device %s, %d threads", cfg.name, total_steps,
                 cfg.train.epochs, steps_per_epoch, sum(p.numel() for p in net.parameters()), device,
                 torch.get_num_threads())

        net.train()
        started = time.perf_counter()
        running_loss, loss_value = 0.0, float("nan")
        bar = tqdm(total=total_steps, desc=f"train {cfg.name}", unit="step", disable=not progress, dynamic_ncols=True)
        with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as metrics_file:
            for step, batch in enumerate(loader):
                sparse = make_sparse_input(batch.voxel_coords, None, device)
                loss_voxel, loss_label = batch.loss_tensors(device)
                out = net(sparse)
                loss = anchor_loss(out["logits"][loss_voxel], loss_label, torch.ones_like(loss_label, dtype=torch.bool))
                if not torch.isfinite(loss):
                    raise FloatingPointError(f"step {step}: loss is {loss.item()} (lower train.lr?)")
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                loss_value = loss.item()
                running_loss += loss_value
                bar.update()
                bar.set_postfix(loss=f"{loss_value:.3f}", voxels=batch.num_voxels)
                if (step + 1) % cfg.train.log_every == 0 or step + 1 == total_steps:
                    record = {"step": step + 1, "epoch": (step + 1) / steps_per_epoch,
                              "loss": running_loss / ((step % cfg.train.log_every) + 1),
                              "lr": optimizer.param_groups[0]["lr"], "voxels": batch.num_voxels,
                              "seconds": round(time.perf_counter() - started, 2)}
                    metrics_file.write(json.dumps(record) + "\n")
                    metrics_file.flush()
                    log.info("step %d/%d loss %.4f", step + 1, total_steps, record["loss"])
                    running_loss = 0.0
        bar.close()
        seconds = time.perf_counter() - started
        checkpoint = run_dir / "model.safetensors"
        save_checkpoint(checkpoint, net, cfg, data.categories.names,
                        extra={"steps": total_steps, "seconds": round(seconds, 1)})
        log.info("trained %d steps in %.1f s; checkpoint %s", total_steps, seconds, checkpoint)
        return TrainResult(checkpoint, total_steps, seconds, loss_value)
    finally:
        logging.getLogger("cad2scan").removeHandler(handler)
        handler.close()
