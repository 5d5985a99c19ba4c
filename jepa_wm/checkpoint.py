"""Loading trained world models from checkpoints, safely.

Checkpoints may come from strangers, so they are read with ``torch.load(weights_only=True)``: tensors
and plain containers only, never pickled code. The model is rebuilt from the config stored inside.
"""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from jepa_wm.errors import CheckpointError
from jepa_wm.module import CHECKPOINT_FORMAT, JEPAWorldModel

ARTIFACT_PREFIX = "wandb:"


def resolve_checkpoint(reference: str | Path) -> Path:
    """A local path, or a W&B artifact reference ``wandb:entity/project/name:alias`` downloaded first."""
    reference = str(reference)
    if reference.startswith(ARTIFACT_PREFIX):
        return _download_artifact(reference[len(ARTIFACT_PREFIX):])
    path = Path(reference).expanduser()
    if path.is_dir():
        for candidate in ("last.ckpt", "model.ckpt"):
            if (path / candidate).is_file():
                return path / candidate
        checkpoints = sorted(path.glob("*.ckpt"))
        if len(checkpoints) == 1:
            return checkpoints[0]
        raise CheckpointError(f"{path} is a directory without a single .ckpt file; pass the checkpoint file itself")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist (train one with scripts/train.py, or pass a wandb: artifact)")
    return path


def _download_artifact(name: str) -> Path:
    import wandb

    try:
        artifact = wandb.Api().artifact(name, type="model")
        directory = Path(artifact.download())
    except Exception as error:  # network, auth and lookup failures all end here
        raise CheckpointError(f"cannot download W&B artifact '{name}': {error}") from error
    checkpoints = sorted(directory.rglob("*.ckpt"))
    if not checkpoints:
        raise CheckpointError(f"W&B artifact '{name}' holds no .ckpt file (files: {[p.name for p in directory.iterdir()]})")
    return checkpoints[0]


def read_checkpoint(path: Path) -> dict:
    """The checkpoint dictionary, loaded without executing any pickled code."""
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(
            f"{path} contains objects that are not plain tensors or containers, and is not loaded for safety "
            f"(it may execute code). Only load checkpoints written by jepa-wm. Detail: {str(error).splitlines()[0]}"
        ) from error
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as error:
        raise CheckpointError(f"{path} is truncated or not a PyTorch checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(checkpoint, dict) or checkpoint.get("hyper_parameters", {}).get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a jepa-wm world model checkpoint (no '{CHECKPOINT_FORMAT}' hyper-parameters)")
    return checkpoint


def load_world_model(reference: str | Path, device: str | torch.device = "cpu") -> JEPAWorldModel:
    """Checkpoint path (or ``wandb:`` artifact reference) -> world model in eval mode on ``device``."""
    path = resolve_checkpoint(reference)
    checkpoint = read_checkpoint(path)
    hparams = checkpoint["hyper_parameters"]
    model = JEPAWorldModel(hparams["cfg"], hparams["obs_shape"], hparams["action_dim"], hparams["env"],
                           hparams.get("run_config"))
    try:
        model.load_state_dict(checkpoint["state_dict"])
    except (RuntimeError, KeyError) as error:
        raise CheckpointError(f"{path}: weights do not fit the model its config describes ({error})") from error
    return model.eval().requires_grad_(False).to(device)
