"""The training loop: one readable function from a config to a checkpoint.

``train(cfg, run_dir)`` runs on the CPU or a GPU (``train.device``), in mixed precision
(``train.amp``), in one process or as one rank of a ``torchrun`` job (see
``cad2scan.train.distributed``), and resumes a killed run (``resume=True``) from its last
checkpoint in ``run_dir/checkpoints`` (see ``cad2scan.train.state``). It writes

    run_dir/config.yaml         the resolved config
    run_dir/train.log           the log
    run_dir/metrics.jsonl       training and evaluation records (``cad2scan.train.monitor``)
    run_dir/tensorboard/        TensorBoard scalars (when the tensorboard package is installed)
    run_dir/checkpoints/        resumable state, every ``train.checkpoint_every`` steps
    run_dir/model.safetensors   the final weights (with config and class names)
    run_dir/replicas.json       multi-process runs: SHA-256 of every rank's final weights
    run_dir/labelled_scans.txt  supervised objectives: the labelled training scans used

``train.objective`` chooses what is learned from: ``rtl`` (CAD models, unlabelled scans),
``supervised`` (labelled training scans, ``train.label_fraction`` of them) or both (see
``cad2scan.train.data`` for how a batch is shared). ``train.init_from`` initialises the
backbone from another run's ``model.safetensors`` (fine-tuning); the rest starts fresh.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from cad2scan.align.labelled import LabelledSampleBuilder
from cad2scan.align.samples import SampleBuilder
from cad2scan.classes import CategorySet, SizePriors, load_category_set, load_size_priors
from cad2scan.config import RunConfig, config_from_dict, config_to_dict, parse_yaml, save_config
from cad2scan.errors import CheckpointError, ConfigError
from cad2scan.model.adaptation import adaptation_loss, source_mask_from_voxels
from cad2scan.model.anchors import anchor_loss
from cad2scan.model.backbone import make_sparse_input
from cad2scan.model.net import RTLNet
from cad2scan.predict import select_device
from cad2scan.prepare import ModelBank, default_workers, list_cad_models, prepare_models, prepare_scene_split
from cad2scan.train.checkpoint import read_checkpoint_metadata, read_checkpoint_tensors, save_checkpoint
from cad2scan.train.data import (BatchStream, TensorBatch, labelled_subset, make_loader, samples_per_epoch,
                                 seed_everything, uses_labels, uses_rtl)
from cad2scan.train.distributed import (DistContext, all_reduce_sum, barrier, broadcast_int, check_global_batch,
                                        distributed_cross_entropy_scale, init_distributed, replica_digests,
                                        shutdown_distributed, unwrap, wrap_model)
from cad2scan.train.monitor import RunMonitor, ThroughputMeter, throughput
from cad2scan.train.state import checkpoints_dir, latest_resume_point, load_train_state, save_train_state

log = logging.getLogger(__name__)
AMP_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


@dataclass
class TrainingData:
    """Everything prepared from disk that a run trains and evaluates on.

    train_scenes: unlabelled training scans (PDA); labelled_scenes: the same split prepared
    with labels (supervised objectives; all of them: a run picks its label_fraction).
    """

    categories: CategorySet
    priors: SizePriors
    bank: ModelBank
    train_scenes: list[Path]
    eval_scenes: list[Path] = field(default_factory=list)
    labelled_scenes: list[Path] = field(default_factory=list)


def cache_dir_for(cfg: RunConfig) -> Path:
    if cfg.data.cache_dir:
        return Path(cfg.data.cache_dir)
    if not cfg.data.scene_root:
        raise ConfigError("config key data.cache_dir (or data.scene_root) must be set")
    return Path(cfg.data.scene_root).resolve().parent / "cad2scan_cache"


def prepare_eval_scenes(cfg: RunConfig, *, progress: bool = True, workers: int | None = None) -> list[Path]:
    """Prepare (or reuse) the labelled evaluation scans of ``cfg`` (none when not configured)."""
    if not cfg.data.eval_scenes:
        return []
    return prepare_scene_split("eval", cfg.data.scene_format, cfg.data.scene_root, cfg.data.eval_scenes,
                               cache_dir_for(cfg), voxel_size=cfg.data.voxel_size,
                               workers=default_workers() if workers is None else workers, progress=progress)


def prepare_training_data(cfg: RunConfig, *, with_eval: bool = True, progress: bool = True,
                          workers: int | None = None) -> TrainingData:
    """Prepare (or reuse from the cache) what ``cfg`` trains and evaluates on.

    CAD models when the objective uses them (``rtl``, ``rtl+supervised``); unlabelled
    training scans when it mixes into scans (``align.mode == "pda"``; ``single`` and
    ``models_only`` need none); labelled training scans (one point per voxel) for the
    supervised objectives; the evaluation scans (``with_eval``).
    """
    objective = cfg.train.objective
    if uses_rtl(objective) and not cfg.data.cad_root:
        raise ConfigError("config key data.cad_root must name the CAD model folder")
    workers = default_workers() if workers is None else workers
    categories = load_category_set(cfg.data.categories)
    priors = load_size_priors(cfg.data.size_priors)
    cache = cache_dir_for(cfg)
    bank = ModelBank({})
    if uses_rtl(objective):
        available = list(list_cad_models(cfg.data.cad_root, cfg.data.cad_split))
        targets = sorted({name for c in categories.classes for name in c.cad if name in available})
        classes = targets + categories.negative_cad_classes(available)
        bank = prepare_models(cfg.data.cad_root, cache, split=cfg.data.cad_split, classes=classes,
                              points_per_model=cfg.data.points_per_model, max_per_class=cfg.data.max_models_per_class,
                              workers=workers, progress=progress)
    train_scenes: list[Path] = []
    if uses_rtl(objective) and cfg.align.mode == "pda":
        train_scenes = prepare_scene_split("train", cfg.data.scene_format, cfg.data.scene_root,
                                           cfg.data.train_scenes, cache, voxel_size=cfg.data.voxel_size,
                                           workers=workers, progress=progress)
    labelled_scenes: list[Path] = []
    if uses_labels(objective):
        labelled_scenes = prepare_scene_split("train_labelled", cfg.data.scene_format, cfg.data.scene_root,
                                              cfg.data.train_scenes, cache, voxel_size=cfg.data.voxel_size,
                                              workers=workers, progress=progress)
    eval_scenes = prepare_eval_scenes(cfg, progress=progress, workers=workers) if with_eval else []
    return TrainingData(categories, priors, bank, train_scenes, eval_scenes, labelled_scenes)


def init_backbone(net: RTLNet, path: str | Path) -> int:
    """Copy the backbone tensors (weights and BatchNorm statistics) of checkpoint ``path`` into
    ``net.backbone``; the hull, anchors and any other head keep their fresh values.

    Returns the number of tensors loaded. Raises CheckpointError naming ``path`` when the
    file is missing or damaged, or its backbone has other tensor names or shapes.
    """
    path = Path(path)
    if str(path).startswith("@"):
        raise ConfigError(f"train.init_from {str(path)!r}: '@row' names are resolved by `cad2scan experiment` only; "
                          f"give a checkpoint path")
    state, _ = read_checkpoint_tensors(path)
    prefix = "backbone."
    loaded = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    own = net.backbone.state_dict()
    missing = sorted(set(own) - set(loaded))
    unexpected = sorted(set(loaded) - set(own))
    wrong = [f"{k} {tuple(loaded[k].shape)} vs {tuple(own[k].shape)}" for k in sorted(set(own) & set(loaded))
             if loaded[k].shape != own[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(f"{path}: its backbone does not fit this run's model.backbone (missing {missing[:3]}, "
                              f"unexpected {unexpected[:3]}, shapes {wrong[:3]})")
    net.backbone.load_state_dict(loaded, strict=True)
    count = sum(int(v.numel()) for k, v in loaded.items() if v.is_floating_point())
    log.info("initialised the backbone from %s: %d tensors (%d values); hull and anchors start fresh",
             path, len(loaded), count)
    return len(loaded)


def _labelled_scans_for_run(cfg: RunConfig, data: TrainingData, run_dir: Path, is_main: bool) -> list[Path]:
    """The ``train.label_fraction`` subset of the labelled training scans (logged; written to
    ``run_dir/labelled_scans.txt``); empty for the ``rtl`` objective."""
    if not uses_labels(cfg.train.objective):
        return []
    if not data.labelled_scenes:
        raise ConfigError(f"train.objective={cfg.train.objective} needs labelled training scans, but none were "
                          f"prepared (data.train_scenes={cfg.data.train_scenes!r})")
    chosen = labelled_subset(data.labelled_scenes, cfg.train.label_fraction, cfg.train.seed)
    ids = [Path(p).stem if Path(p).suffix else Path(p).name for p in chosen]
    log.info("labelled training scans: %d of %d (label_fraction %g): %s", len(chosen), len(data.labelled_scenes),
             cfg.train.label_fraction, ", ".join(ids))
    if is_main:
        from cad2scan.io.atomic import atomic_write_text

        atomic_write_text(run_dir / "labelled_scans.txt", "".join(f"{i}\n" for i in ids))
    return chosen


def sample_builder(cfg: RunConfig, data: TrainingData) -> SampleBuilder:
    """The builder of a run's synthetic training samples (PDA mixing, single models, ...)."""
    return SampleBuilder(data.bank.points, data.categories, data.priors, cfg.align.mode, cfg.align.augment,
                         cfg.align.mix, cfg.align.negatives_per_sample, cfg.align.scene_crop,
                         negatives=cfg.align.negatives)


def configure_threads(cfg: RunConfig, local_world_size: int = 1) -> int:
    """Set torch's intra-op threads: ``train.num_threads``, or (0) this process's share of the
    cores (cores / processes on this machine, minus one per data worker), at least 1."""
    cores = os.cpu_count() or 1
    threads = cfg.train.num_threads or max(1, cores // max(1, local_world_size) - cfg.train.num_workers)
    torch.set_num_threads(threads)
    return threads


def setup_runtime(cfg: RunConfig, local_world_size: int = 1) -> torch.device:
    """Threads, seeds and device, set deliberately (no silent CPU over-subscription)."""
    configure_threads(cfg, local_world_size)
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
    steps: int  # steps the run has done in total (a resumed run counts the earlier ones)
    seconds: float  # wall time of this call
    final_loss: float  # loss of the last step (global batch), nan when no step ran
    start_step: int = 0  # the step this call started at (> 0 when resumed)
    world_size: int = 1
    weights_sha256: str = ""  # of this process's final weights (equal on all ranks)
    rank: int = 0


def lr_factor(cfg: RunConfig, total_steps: int):
    """Learning-rate multiplier of optimizer step ``i`` (0-based): linear warm-up over
    ``train.warmup_steps``, then constant or cosine decay to 0 at ``total_steps``."""
    warmup, cosine = cfg.train.warmup_steps, cfg.train.lr_schedule == "cosine"

    def factor(step: int) -> float:
        value = (step + 1) / warmup if warmup and step < warmup else 1.0
        if cosine:
            value *= 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / max(1, total_steps)))
        return value

    return factor


def configure_precision(net: torch.nn.Module, amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype of ``train.amp`` (None: float32); the sparse convolutions, which
    autocast does not reach, are switched to the same compute dtype."""
    if amp == "off":
        return None
    dtype = AMP_DTYPES[amp]
    from cad2scan.model import sparse

    if hasattr(sparse, "set_compute_dtype"):
        sparse.set_compute_dtype(net, dtype)
    if device.type == "cpu":
        fast = amp == "bf16" and getattr(sparse, "bf16_is_fast", lambda d: False)("cpu")
        if not fast:
            log.warning("train.amp=%s on a CPU without native %s matmuls is slower than float32", amp, amp)
    return dtype


def _resume_config_check(folder: Path, cfg: RunConfig, class_names: list[str]) -> None:
    """The checkpoint must come from the same network and classes; other changes are logged."""
    metadata = read_checkpoint_metadata(folder / "model.safetensors")
    saved = config_to_dict(config_from_dict(parse_yaml(metadata["config"]), f"{folder} (embedded config)"))
    now = config_to_dict(cfg)
    if saved["model"] != now["model"] or json.loads(metadata["class_names"]) != list(class_names):
        raise CheckpointError(f"{folder}: cannot resume: the checkpoint's network or classes differ from this "
                              f"config (train in another run folder, or resume with the original config)")
    changed = [f"{section}.{key}" for section in ("data", "align", "train") for key in now[section]
               if saved[section].get(key) != now[section][key]]
    if changed:
        log.warning("resuming with changed settings: %s", ", ".join(changed))


def _resume(run_dir: Path, cfg: RunConfig, class_names: list[str], net, optimizer, scheduler, scaler,
            ctx: DistContext, device: torch.device) -> int:
    """Load the newest complete checkpoint (chosen by rank 0) into the run; return its step."""
    point = latest_resume_point(run_dir) if ctx.is_main else None
    step = broadcast_int(point.step if point else -1, ctx, device)
    if step < 0:
        log.warning("no checkpoint in %s: starting from step 0", checkpoints_dir(run_dir))
        return 0
    folder = checkpoints_dir(run_dir) / f"step-{step:08d}"
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: not visible to rank {ctx.rank}: resuming a multi-process run needs the "
                              f"run folder on a filesystem shared by all ranks")
    _resume_config_check(folder, cfg, class_names)
    loaded = load_train_state(folder, net, optimizer, scheduler, scaler)
    log.info("resumed from %s (step %d)", folder, loaded)
    return loaded


def global_batch_loss(model, batch: TensorBatch, device: torch.device, amp_dtype: torch.dtype | None,
                      ctx: DistContext) -> tuple[torch.Tensor, float]:
    """Forward this rank's share of a step; return (the loss to back-propagate, the loss value).

    The value is the anchor loss (mean cross-entropy, paper eq. 3) over the labelled
    synthetic points of the whole global batch; in a multi-process run the loss to
    back-propagate is rank r's mean scaled by ``n_r * W / N``, so that DDP's gradient average
    is the gradient of that global mean (see ``cad2scan.train.distributed``).

    With ``model.adaptation`` (the domain-adaptation comparison rows) the adaptation heads'
    loss, times ``model.adaptation_weight``, is added to what is back-propagated (per rank;
    DDP averages it); the value returned stays the anchor loss. Source voxels are the voxels
    of the labelled synthetic points, target voxels all others (real scan points only).
    """
    coords, loss_voxel, loss_label = batch.to_device(device)
    sparse = make_sparse_input(coords, None, device)
    precision = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else contextlib.nullcontext()
    with precision:
        out = model(sparse)
    mean_loss = anchor_loss(out["logits"][loss_voxel], loss_label, torch.ones_like(loss_label, dtype=torch.bool))
    net = unwrap(model)
    adaptation = None
    if getattr(net, "adaptation", None) is not None:
        source = source_mask_from_voxels(out["logits"].shape[0], loss_voxel)
        adaptation = net.adaptation_weight * adaptation_loss(out, source, loss_voxel, loss_label)
    if not ctx.enabled:
        return (mean_loss if adaptation is None else mean_loss + adaptation), mean_loss.item()
    local = batch.loss_label.numel()
    totals = torch.stack([mean_loss.detach().double() * local,
                          torch.tensor(float(local), device=mean_loss.device, dtype=torch.float64)])
    loss_sum, total = all_reduce_sum(totals, ctx).tolist()
    scaled = mean_loss * distributed_cross_entropy_scale(local, total, ctx)
    return (scaled if adaptation is None else scaled + adaptation), (loss_sum / total if total > 0 else 0.0)


def _train_step(model, batch: TensorBatch, device: torch.device, optimizer, scheduler, scaler,
                amp_dtype: torch.dtype | None, ctx: DistContext) -> float:
    """One optimizer step on the global batch; returns its loss (mean over all ranks' points)."""
    loss, loss_value = global_batch_loss(model, batch, device, amp_dtype, ctx)
    if not math.isfinite(loss_value):  # the same value on every rank: all stop together
        raise FloatingPointError(f"step {batch.step}: loss is {loss_value} (lower train.lr?)")
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    scaler.step(optimizer)  # skipped by an fp16 GradScaler when gradients overflowed
    scaler.update()
    with warnings.catch_warnings():  # the schedule follows the step count, skipped steps included
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step\\(\\)` before")
        scheduler.step()
    return loss_value


def _interval_record(meter: ThroughputMeter, ctx: DistContext, device: torch.device) -> dict:
    """Throughput of the interval over all ranks (summed scans and points, mean seconds)."""
    sums = torch.tensor([meter.samples, meter.points, meter.wait_s, meter.step_s], dtype=torch.float64,
                        device=device)
    samples, points, wait_s, step_s = all_reduce_sum(sums, ctx).tolist()
    return throughput(samples, points, wait_s / ctx.world_size, step_s / ctx.world_size)


def _prepare_on_all_ranks(cfg: RunConfig, ctx: DistContext, progress: bool) -> TrainingData:
    """Rank 0 fills the cache first, then the first process of every other node (whose cache
    may be its own disk), then everyone else reads it: never two writers on one cache."""
    with_eval = cfg.train.eval_every > 0
    data = prepare_training_data(cfg, with_eval=with_eval, progress=progress) if ctx.is_main else None
    barrier(ctx)
    if data is None and ctx.local_rank == 0:
        data = prepare_training_data(cfg, with_eval=with_eval, progress=False)
    barrier(ctx)
    return data or prepare_training_data(cfg, with_eval=with_eval, progress=False)


def _clear_checkpoints(run_dir: Path) -> None:
    folder = checkpoints_dir(run_dir)
    if folder.is_dir() and any(folder.iterdir()):
        log.warning("starting afresh in %s: removing the earlier run's checkpoints (use --resume to continue it)",
                    run_dir)
        shutil.rmtree(folder)


def train(cfg: RunConfig, run_dir: str | Path, data: TrainingData | None = None, progress: bool = True,
          resume: bool = False) -> TrainResult:
    """Train ``cfg`` into ``run_dir`` (see the module docstring); ``resume`` continues from the
    newest checkpoint there (from step 0 when there is none)."""
    cfg.train.validate()
    run_dir = Path(run_dir)
    ctx, device = init_distributed(cfg.train.device)
    determinism = (torch.are_deterministic_algorithms_enabled(),
                   torch.is_deterministic_algorithms_warn_only_enabled())
    handler = monitor = None
    package_log = logging.getLogger("cad2scan")
    log_level = package_log.level
    try:
        check_global_batch(cfg.train.batch_size, ctx)
        if not ctx.is_main:  # one voice: the other ranks report only problems
            package_log.setLevel(logging.WARNING)
        if ctx.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            handler = attach_file_log(run_dir)
            save_config(cfg, run_dir / "config.yaml")
        threads = configure_threads(cfg, ctx.local_world_size)
        seed_everything(cfg.train.seed, cfg.train.deterministic)
        data = data or _prepare_on_all_ranks(cfg, ctx, progress and ctx.is_main)
        show = progress and ctx.is_main
        objective = cfg.train.objective
        builder = None
        if uses_rtl(objective):
            builder = sample_builder(cfg, data)
        labelled_files = _labelled_scans_for_run(cfg, data, run_dir, ctx.is_main)
        labelled_builder = LabelledSampleBuilder(data.categories, cfg.align.scene_crop) if labelled_files else None
        epoch_samples = samples_per_epoch(objective, len(data.train_scenes), len(labelled_files))
        steps_per_epoch = cfg.train.steps_per_epoch or max(1, math.ceil(epoch_samples / cfg.train.batch_size))
        total_steps = cfg.train.epochs * steps_per_epoch
        checkpoint_every = cfg.train.checkpoint_every or steps_per_epoch

        net = RTLNet(cfg.model, data.categories.num_classes, data.categories.names)
        if cfg.train.init_from:  # (a resumed run then loads all its weights over it)
            init_backbone(net, cfg.train.init_from)
        net = net.to(device)
        amp_dtype = configure_precision(net, cfg.train.amp, device)
        optimizer = torch.optim.Adam(net.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, total_steps))
        scaler = torch.amp.GradScaler(device.type, enabled=cfg.train.amp == "fp16")
        start_step = 0
        if resume:
            start_step = _resume(run_dir, cfg, data.categories.names, net, optimizer, scheduler, scaler, ctx, device)
        elif ctx.is_main:
            _clear_checkpoints(run_dir)
        model = wrap_model(net, ctx, cfg.train.sync_bn)

        stream = BatchStream(builder, data.train_scenes, cfg.train.batch_size, cfg.data.voxel_size, cfg.train.seed,
                             total_steps, start_step=start_step, rank=ctx.rank, world_size=ctx.world_size,
                             labelled_builder=labelled_builder, labelled_files=labelled_files, objective=objective)
        loader = make_loader(stream, cfg.train.num_workers, pin_memory=device.type == "cuda")
        monitor = RunMonitor(run_dir if ctx.is_main else None, cfg.train.tensorboard, start_step)
        evaluate_now = cfg.train.eval_every > 0 and bool(data.eval_scenes)
        if cfg.train.eval_every > 0 and not data.eval_scenes:
            log.warning("train.eval_every=%d but there are no evaluation scans: no evaluation", cfg.train.eval_every)
        log.info("run %s: objective %s, steps %d..%d (%d epochs x %d), %d parameters, device %s, %d threads, "
                 "%d data workers, amp %s, %d process(es)", cfg.name, objective, start_step, total_steps,
                 cfg.train.epochs, steps_per_epoch,
                 sum(p.numel() for p in net.parameters()), device, threads, cfg.train.num_workers, cfg.train.amp,
                 ctx.world_size)

        model.train()
        started = time.perf_counter()
        meter, running_loss, loss_value = ThroughputMeter(), 0.0, float("nan")
        bar = tqdm(total=total_steps, initial=start_step, desc=f"train {cfg.name}", unit="step", disable=not show,
                   dynamic_ncols=True)
        batches = iter(loader)
        for step in range(start_step, total_steps):
            fetch_started = time.perf_counter()
            batch = next(batches)
            fetched = time.perf_counter()
            loss_value = _train_step(model, batch, device, optimizer, scheduler, scaler, amp_dtype, ctx)
            meter.add(fetched - fetch_started, time.perf_counter() - fetch_started, batch.num_samples,
                      batch.num_points)
            running_loss += loss_value
            done = step + 1
            bar.update()
            if done % cfg.train.log_every == 0 or done == total_steps:
                record = {"step": done, "epoch": done / steps_per_epoch, "loss": running_loss / meter.steps,
                          "lr": optimizer.param_groups[0]["lr"], **_interval_record(meter, ctx, device),
                          "voxels": batch.num_voxels, "seconds": round(time.perf_counter() - started, 2)}
                if device.type == "cuda":
                    record["gpu_mem_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
                monitor.log_train(record)
                bar.set_postfix(loss=f"{record['loss']:.3f}", scans_s=f"{record['scans_per_s']:.2f}",
                                wait=f"{record['data_wait_frac']:.0%}")
                log.info("step %d/%d loss %.4f, %.2f scans/s, %.0f points/s, data wait %.0f%%", done, total_steps,
                         record["loss"], record["scans_per_s"], record["points_per_s"], 100 * record["data_wait_frac"])
                meter.reset()
                running_loss = 0.0
            if ctx.is_main and (done % checkpoint_every == 0 or done == total_steps):
                save_train_state(run_dir, done, net, optimizer, scheduler, scaler, cfg, data.categories.names,
                                 keep=cfg.train.keep_checkpoints)
            if evaluate_now and (done % cfg.train.eval_every == 0 or done == total_steps):
                if ctx.is_main:
                    _evaluate(model, data, cfg, device, monitor, done)
                barrier(ctx)
        bar.close()
        del batches, loader
        seconds = time.perf_counter() - started
        checkpoint = run_dir / "model.safetensors"
        digests = replica_digests(net, ctx)
        if ctx.is_main:
            save_checkpoint(checkpoint, net, cfg, data.categories.names,
                            extra={"steps": total_steps, "seconds": round(seconds, 1), "world_size": ctx.world_size})
            if ctx.enabled:
                _write_replicas(run_dir, digests)
            log.info("trained steps %d..%d in %.1f s; checkpoint %s", start_step, total_steps, seconds, checkpoint)
        barrier(ctx)
        return TrainResult(checkpoint, total_steps, seconds, loss_value, start_step, ctx.world_size, digests[ctx.rank],
                           ctx.rank)
    finally:
        if monitor is not None:
            monitor.close()
        if handler is not None:
            package_log.removeHandler(handler)
            handler.close()
        package_log.setLevel(log_level)
        torch.use_deterministic_algorithms(determinism[0], warn_only=determinism[1])
        shutdown_distributed(ctx)


def _evaluate(model, data: TrainingData, cfg: RunConfig, device: torch.device, monitor: RunMonitor, step: int):
    """AP per class and AmAP on the evaluation scans (rank 0; the network is put back in training mode)."""
    from cad2scan.eval.evaluate import evaluate_scenes

    result = evaluate_scenes(unwrap(model), data.eval_scenes, data.categories, cfg.data.voxel_size, device,
                             progress=False)
    monitor.log_eval(step, result)
    log.info("step %d: eval AmAP %.2f mIoU %.2f", step, result.amap, result.miou)
    unwrap(model).train()


def _write_replicas(run_dir: Path, digests: list[str]) -> None:
    from cad2scan.io.atomic import atomic_write_text

    identical = len(set(digests)) == 1
    atomic_write_text(run_dir / "replicas.json", json.dumps({"world_size": len(digests), "sha256": digests,
                                                             "identical": identical}, indent=1))
    if not identical:
        log.error("the %d replicas ended with different weights: %s", len(digests), digests)
