"""Loading trained world models from checkpoints, safely.

Checkpoints may come from strangers, so they are read with ``torch.load(weights_only=True)``: tensors
and plain containers only, never pickled code. The model is rebuilt from the config stored inside,
without downloading or reading pretrained weights: the checkpoint holds every weight.
"""

from __future__ import annotations

import pickle
import zipfile
import zlib
from pathlib import Path

import torch

from jepa_wm import references
from jepa_wm.errors import CheckpointError, first_line
from jepa_wm.files import save_torch_atomic
from jepa_wm.heads import head_families, head_keys
from jepa_wm.module import CHECKPOINT_FORMAT, READABLE_FORMATS, upgrade_state_dict
from jepa_wm.references import REBUILD_ZOO, resolve_checkpoint
from jepa_wm.world_model import WorldModel

REBUILD_HINT = "rebuild it with this version: collect with jepa-wm collect, train with jepa-wm train"


def _holds_pickled_objects(path: Path) -> bool:
    """A well-formed PyTorch zip archive, so a weights-only refusal means it pickles objects, not damage."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any(name.endswith("data.pkl") for name in archive.namelist()) and archive.testzip() is None
    except (zipfile.BadZipFile, OSError, ValueError):
        return False


def check_archive_integrity(path: Path) -> None:
    """Every entry of a checkpoint's zip archive against the CRC-32 written with it: ``torch.load`` never
    checks them, so flipped bytes in a tensor would otherwise load as wrong weights without a word."""
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, zlib.error):
        return  # not a readable zip archive: torch.load says what it is
    if damaged is not None:
        raise CheckpointError(f"{path} is corrupt: its entry {damaged.split('/', 1)[-1]} fails its CRC-32 check (bytes "
                              f"changed after it was written); use an intact copy or retrain")


def read_checkpoint(path: Path) -> dict:
    """The checkpoint dictionary, loaded without executing any pickled code, after its integrity check."""
    path = Path(path)
    check_archive_integrity(path)
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError,
            AttributeError, TypeError, ImportError, KeyError) as error:
        if isinstance(error, pickle.UnpicklingError) and _holds_pickled_objects(path):
            raise CheckpointError(
                f"{path} contains objects that are not plain tensors or containers (pickled code could run "
                f"while loading it), so it is not loaded; use checkpoints written by jepa-wm"
            ) from error
        raise CheckpointError(f"{path} is corrupt or truncated, or not a PyTorch checkpoint "
                              f"({type(error).__name__}); use an intact copy or retrain") from error
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("hyper_parameters"), dict):
        raise CheckpointError(f"{path} is not a jepa-wm world model checkpoint (no jepa-wm hyper-parameters)")
    step = checkpoint.get("global_step", 0)
    if not isinstance(step, int) or isinstance(step, bool) or step < 0:
        raise CheckpointError(f"{path}: global_step is {step!r}, not a step count; the checkpoint was edited or damaged")
    found = checkpoint["hyper_parameters"].get("format")
    if found not in READABLE_FORMATS:
        if isinstance(found, str) and found.startswith("jepa-wm/"):
            hint = f"rebuild the shipped models with {REBUILD_ZOO}" if path.parent == references.PRETRAINED_DIR else REBUILD_HINT
            raise CheckpointError(f"{path} has checkpoint format {found}, but this version reads {CHECKPOINT_FORMAT}; "
                                  f"{hint}")
        raise CheckpointError(f"{path} is not a jepa-wm world model checkpoint (no '{CHECKPOINT_FORMAT}' hyper-parameters)")
    return checkpoint


def model_from_checkpoint(checkpoint: dict, path: Path | str = "checkpoint") -> WorldModel:
    """Rebuild the world model a checkpoint dictionary describes and load its weights (train mode, CPU).

    Only the world model's own weights load (the training heads, e.g. inverse dynamics, stay behind); a
    format-2 checkpoint, which kept them at the top of its state dict, loads the same way.
    """
    hparams = checkpoint["hyper_parameters"]
    try:
        model = WorldModel(hparams["cfg"], hparams["obs_shape"], hparams["action_dim"],
                           {**hparams, "format": CHECKPOINT_FORMAT}, load_pretrained=False)
    except Exception as error:  # a file from anyone: whatever its config makes the building blocks refuse
        raise CheckpointError(f"{path}: its model config cannot build a jepa-wm world model "
                              f"({type(error).__name__}: {error}); {REBUILD_HINT}") from error
    saved = checkpoint.get("state_dict")
    if isinstance(saved, dict):
        saved = {key.removeprefix("world_model."): value for key, value in upgrade_state_dict(saved).items()
                 if key.startswith("world_model.")}
    mismatch = state_dict_mismatch(saved, model.state_dict())
    if mismatch:
        raise CheckpointError(f"{path}: weights do not fit the model its config describes ({mismatch}); the "
                              f"checkpoint was edited, or written by another version: {REBUILD_HINT}")
    bad = [name for name, tensor in saved.items() if tensor.is_floating_point() and not torch.isfinite(tensor).all()]
    if bad:
        raise CheckpointError(f"{path}: weight {bad[0]} holds NaN or inf values (the run that wrote it diverged); "
                              f"use an earlier checkpoint of that run")
    model.load_state_dict(saved)
    for family in head_families():
        entry = checkpoint.get(family.key)
        if entry is None:
            continue
        try:
            problem = unusable_head(entry, model) or family.stored.entry_problem(entry, model)
            head = None if problem else family.stored.from_checkpoint(entry)
        except Exception as error:  # a file from anyone
            raise CheckpointError(f"{path}: its {family.description} cannot be rebuilt ({type(error).__name__}: "
                                  f"{first_line(error)}); retrain it with jepa-wm {family.command}") from error
        if problem:
            raise CheckpointError(f"{path}: its {family.description} {problem}; retrain it with jepa-wm {family.command}")
        setattr(model, family.key, head)
    return model


def unusable_head(entry: dict, model: WorldModel) -> str | None:
    """Why a stored head (learned cost, policy, ...) would plan or act with garbage, in words (None when usable).

    A head whose weights are NaN, all zero, or scaled by a non-positive spread still runs and returns numbers,
    so planning with it would report a success rate without error; a head built for another model's embeddings
    or actions fails deep inside planning instead. Both are refused where the checkpoint is read.
    """
    weights = [value for value in entry["state_dict"].values() if value.is_floating_point()]
    numbers = weights + [entry["input_mean"], entry["input_std"]]
    numbers += [torch.tensor(float(entry[key])) for key in ("latent_scale", "learned_scale") if key in entry]
    if not all(torch.isfinite(value).all() for value in numbers):
        return "holds NaN or inf values (its training diverged or the file was edited)"
    if not any(value.any() for value in weights):
        return "has all-zero weights (it would give every state the same value)"
    if not (entry["input_std"] > 0).all() or not all(float(entry.get(key, 1.0)) > 0 for key in ("latent_scale", "learned_scale")):
        return "has a non-positive scale (the file was edited)"
    features = model.num_tokens * model.embed_dim
    if int(entry["input_mean"].shape[0]) != features:
        return (f"reads {int(entry['input_mean'].shape[0])} embedding features, but this model's embeddings have "
                f"{features} (it was trained on another model)")
    return None  # what only one family can check: its stored head's ``problem(model)``


def state_dict_mismatch(saved, expected: dict) -> str | None:
    """The first difference between a checkpoint's weights and a model's, in words (None when they fit)."""
    if not isinstance(saved, dict) or not all(isinstance(value, torch.Tensor) for value in saved.values()):
        return "its state_dict is not a mapping of tensors"
    for name, tensor in expected.items():
        if name not in saved:
            return f"{name} is missing"
        if tuple(saved[name].shape) != tuple(tensor.shape):
            return f"{name} has shape {tuple(saved[name].shape)} in the checkpoint, {tuple(tensor.shape)} in the model"
    unexpected = sorted(set(saved) - set(expected))
    return f"{unexpected[0]} is not a weight of this model" if unexpected else None


def load_world_model(reference: str | Path, device: str | torch.device = "cpu") -> WorldModel:
    """Checkpoint path (or ``wandb:`` artifact reference) -> world model in eval mode on ``device``."""
    path = resolve_checkpoint(reference)
    model = model_from_checkpoint(read_checkpoint(path), path)
    for family in head_families():
        head = getattr(model, family.key)
        if head is not None:
            head.to(device)
    return model.eval().requires_grad_(False).to(device)


def export_weights(checkpoint: dict, path: Path) -> Path:
    """Write the parts of a checkpoint that planning needs (weights, config, step, learned cost), without
    optimizer, scheduler or loop states: what ships and uploads. Written atomically."""
    slim = {"state_dict": checkpoint["state_dict"], "hyper_parameters": checkpoint["hyper_parameters"],
            "global_step": checkpoint.get("global_step", 0)}
    for key in head_keys():
        if checkpoint.get(key) is not None:
            slim[key] = checkpoint[key]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_torch_atomic(path, slim)
