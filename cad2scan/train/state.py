"""Resumable training state, without pickle.

A resumable checkpoint is a folder ``run_dir/checkpoints/step-NNNNNNNN`` (N = steps done):

* ``model.safetensors``  - the weights, as :func:`cad2scan.train.checkpoint.save_checkpoint`
  writes them (config, class names and a digest inside: ``predict`` can use it directly);
* ``tensors.safetensors`` - every tensor of the optimizer state (``optimizer/<param>/<name>``)
  and the random-number generator states (``rng/torch``, ``rng/cuda/<i>``);
* ``state.json``          - the step, the optimizer's param groups and non-tensor state, the
  LR scheduler and GradScaler state dicts, and the SHA-256 of the two files above and of
  itself (``sha256``), so a changed byte anywhere is a :class:`CheckpointError`.

The folder is written as ``step-NNNNNNNN.partial`` and renamed when complete, so a run
killed mid-write leaves the previous checkpoint as the newest complete one. Loading reads
safetensors and JSON only.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from cad2scan.config import RunConfig
from cad2scan.errors import CheckpointError
from cad2scan.io.atomic import atomic_write_bytes, atomic_write_text
from cad2scan.train.checkpoint import load_weights, save_checkpoint

STATE_FORMAT = "cad2scan-train-state-1"
_STEP_DIR = re.compile(r"step-(\d{8,})")
log = logging.getLogger(__name__)


@dataclass
class ResumePoint:
    """A complete resumable checkpoint: ``folder`` holds the state after ``step`` steps."""

    folder: Path
    step: int


def checkpoints_dir(run_dir: str | Path) -> Path:
    return Path(run_dir) / "checkpoints"


def list_resume_points(run_dir: str | Path) -> list[ResumePoint]:
    """Complete checkpoint folders of a run, newest (highest step) first."""
    root = checkpoints_dir(run_dir)
    points = []
    if root.is_dir():
        for folder in root.iterdir():
            match = _STEP_DIR.fullmatch(folder.name)
            if match and folder.is_dir() and (folder / "state.json").is_file():
                points.append(ResumePoint(folder, int(match.group(1))))
    return sorted(points, key=lambda p: p.step, reverse=True)


def latest_resume_point(run_dir: str | Path) -> ResumePoint | None:
    points = list_resume_points(run_dir)
    return points[0] if points else None


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _json_sha256(document: dict) -> str:
    body = {k: v for k, v in document.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def _plain(value, where: str):
    """A JSON-safe copy of an optimizer/scheduler value (tuples become lists)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v, where) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v, where) for k, v in value.items()}
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    raise CheckpointError(f"cannot store {where} value of type {type(value).__name__} without pickle")


def _split_optimizer_state(state_dict: dict) -> tuple[dict[str, torch.Tensor], dict]:
    tensors, scalars = {}, {}
    for index, entries in state_dict["state"].items():
        for name, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer/{index}/{name}"] = value.detach().to("cpu").contiguous()
            else:
                scalars.setdefault(str(index), {})[name] = _plain(value, f"optimizer state {name}")
    groups = [_plain(group, "optimizer param group") for group in state_dict["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _join_optimizer_state(tensors: dict[str, torch.Tensor], meta: dict) -> dict:
    state: dict[int, dict] = {}
    for key, tensor in tensors.items():
        if key.startswith("optimizer/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = tensor
    for index, entries in meta["scalars"].items():
        state.setdefault(int(index), {}).update(entries)
    groups = []
    for group in meta["param_groups"]:  # JSON lists back to the tuples optimizers use (betas ...)
        groups.append({k: (tuple(v) if isinstance(v, list) and k != "params" else v) for k, v in group.items()})
    return {"state": state, "param_groups": groups}


def _rng_tensors() -> dict[str, torch.Tensor]:
    tensors = {"rng/torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"rng/cuda/{i}"] = rng
    return tensors


def _restore_rng(tensors: dict[str, torch.Tensor]) -> None:
    if "rng/torch" in tensors:
        torch.set_rng_state(tensors["rng/torch"])
    cuda = sorted((k for k in tensors if k.startswith("rng/cuda/")), key=lambda k: int(k.rsplit("/", 1)[1]))
    if cuda and torch.cuda.is_available():
        states = [tensors[k] for k in cuda][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(states)


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def save_train_state(run_dir: str | Path, step: int, net: torch.nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler, scaler, cfg: RunConfig, class_names: list[str], keep: int = 1,
                     extra: dict | None = None) -> Path:
    """Write the resumable state after ``step`` steps; keep the ``keep`` newest; return the folder.

    ``net`` is the bare network (not a DDP wrapper); ``scheduler`` / ``scaler`` are an LR
    scheduler and a ``torch.amp.GradScaler`` (or None).
    """
    root = checkpoints_dir(run_dir)
    final = root / f"step-{step:08d}"
    partial = root / f"step-{step:08d}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    save_checkpoint(partial / "model.safetensors", net, cfg, class_names, extra={"step": step, **(extra or {})})
    opt_tensors, opt_meta = _split_optimizer_state(optimizer.state_dict())
    tensors = {**opt_tensors, **_rng_tensors()}
    atomic_write_bytes(partial / "tensors.safetensors", save(tensors, metadata={"format": STATE_FORMAT}))
    document = {
        "format": STATE_FORMAT,
        "step": int(step),
        "optimizer": opt_meta,
        "scheduler": _plain(scheduler.state_dict(), "scheduler") if scheduler is not None else None,
        "scaler": _plain(scaler.state_dict(), "grad scaler") if scaler is not None else None,
        "files": {name: _file_sha256(partial / name) for name in ("model.safetensors", "tensors.safetensors")},
    }
    document["sha256"] = _json_sha256(document)
    atomic_write_text(partial / "state.json", json.dumps(document, indent=1))
    _fsync_dir(partial)
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    _fsync_dir(root)
    for old in list_resume_points(run_dir)[keep:]:
        shutil.rmtree(old.folder, ignore_errors=True)
    return final


def read_state_document(folder: str | Path) -> dict:
    """The verified ``state.json`` of a checkpoint folder (CheckpointError when damaged or tampered)."""
    folder = Path(folder)
    path = folder / "state.json"
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (not a resumable checkpoint folder)") from None
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{path}: unreadable training state ({error})") from None
    if not isinstance(document, dict) or document.get("format") != STATE_FORMAT:
        found = document.get("format") if isinstance(document, dict) else None
        raise CheckpointError(f"{path}: not a cad2scan training state (format {found!r}, expected {STATE_FORMAT!r})")
    if document.get("sha256") != _json_sha256(document):
        raise CheckpointError(f"{path}: checksum mismatch: the file was modified or damaged after it was written")
    for name, expected in document["files"].items():
        file = folder / name
        if not file.is_file():
            raise CheckpointError(f"{file}: missing from the checkpoint folder")
        if _file_sha256(file) != expected:
            raise CheckpointError(f"{file}: checksum mismatch: the file was modified or damaged after it was written")
    return document


def load_train_state(folder: str | Path, net: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler=None,
                     scaler=None) -> int:
    """Restore weights, optimizer, scheduler, GradScaler and RNG states in place; return the step.

    Everything is verified first (digests), then loaded: a CheckpointError leaves the
    objects untouched apart from a partial weights load that is also reported.
    """
    folder = Path(folder)
    document = read_state_document(folder)
    try:
        tensors = load_file(str(folder / "tensors.safetensors"), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{folder / 'tensors.safetensors'}: damaged training state ({error})") from None
    load_weights(folder / "model.safetensors", net)
    try:
        optimizer.load_state_dict(_join_optimizer_state(tensors, document["optimizer"]))
        if scheduler is not None and document.get("scheduler"):
            scheduler.load_state_dict(document["scheduler"])
        if scaler is not None and document.get("scaler") and scaler.is_enabled():
            scaler.load_state_dict(document["scaler"])
    except (KeyError, ValueError, RuntimeError) as error:
        raise CheckpointError(f"{folder}: training state does not fit this run ({error})") from None
    _restore_rng(tensors)
    return int(document["step"])
