"""Training runs: the Trainer, loggers and checkpoints around a ``JEPAWorldModel``.

The data module is passed in (anything with ``setup``, ``obs_shape``, ``action_dim`` and
``describe()``, like ``data.TrajectoryDataModule``), so this package stays independent of ``data``.
"""

from __future__ import annotations

import datetime
import difflib
import inspect
import os
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from jepa_wm.config import to_dict
from jepa_wm.errors import ConfigError
from jepa_wm.module import JEPAWorldModel

MONITOR = "val/rollout_error_ratio"  # scale-free, so comparable across anti-collapse settings


def run_directory(cfg: DictConfig) -> Path:
    if cfg.out:
        return Path(cfg.out)
    return Path("runs") / datetime.datetime.now().strftime("train-%Y%m%d-%H%M%S")


def build_loggers(cfg: DictConfig, out: Path) -> list:
    loggers = [CSVLogger(save_dir=str(out), name="csv", version="")]
    mode = os.environ.get("WANDB_MODE", cfg.wandb.mode)
    if mode != "disabled":
        # Reuse the run id on resume so W&B continues the same run instead of starting a new one.
        id_file = out / "wandb_run_id.txt"
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        logger = WandbLogger(
            project=cfg.wandb.project, entity=cfg.wandb.entity, name=cfg.wandb.name or out.name,
            tags=list(cfg.wandb.tags), save_dir=str(out), offline=mode == "offline", id=run_id,
            resume="allow" if run_id else None, log_model="all" if cfg.wandb.log_checkpoints and mode == "online" else False,
            config=to_dict(cfg),
        )
        if run_id is None and pl.utilities.rank_zero_only.rank == 0:
            id_file.write_text(logger.experiment.id)
        loggers.append(logger)
    return loggers


def build_trainer(cfg: DictConfig, out: Path, callbacks=(), loggers=None) -> pl.Trainer:
    checkpoints = ModelCheckpoint(
        dirpath=out / "checkpoints", filename="best", monitor=MONITOR, mode="min", save_last=True,
        save_top_k=1, auto_insert_metric_name=False,
    )
    trainer_args = to_dict(cfg.trainer)
    valid = set(inspect.signature(pl.Trainer.__init__).parameters) - {"self"}
    for name in trainer_args:
        if name not in valid:
            close = difflib.get_close_matches(name, sorted(valid), n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"'trainer.{name}' is not a pytorch_lightning.Trainer argument{hint}")
    return pl.Trainer(
        **trainer_args, default_root_dir=str(out), callbacks=[checkpoints, *callbacks],
        logger=build_loggers(cfg, out) if loggers is None else loggers,
    )


def fit(cfg: DictConfig, datamodule, callbacks=()) -> Path:
    """Train the world model of ``cfg`` on ``datamodule``; returns the run directory.

    The run directory holds ``config.yaml``, ``checkpoints/{last,best}.ckpt`` (each with the model
    config inside), a CSV log and the W&B run. With ``cfg.resume`` training continues from
    ``last.ckpt``.
    """
    out = run_directory(cfg)
    out.mkdir(parents=True, exist_ok=True)
    pl.seed_everything(cfg.seed, workers=True)
    resume_from = out / "checkpoints" / "last.ckpt"
    if cfg.resume and not resume_from.is_file():
        raise ConfigError(f"resume=true but {resume_from} does not exist; drop resume or point out= at an earlier run")
    if not cfg.resume and resume_from.is_file():
        raise ConfigError(f"{out} already holds a run; pass resume=true to continue it, or choose another out=")
    OmegaConf.save(cfg, out / "config.yaml")
    datamodule.setup("fit")
    model = JEPAWorldModel(cfg.model, datamodule.obs_shape, datamodule.action_dim, env=datamodule.describe(),
                           run_config=to_dict(cfg))
    trainer = build_trainer(cfg, out, callbacks)
    trainer.fit(model, datamodule=datamodule, ckpt_path=str(resume_from) if cfg.resume else None)
    return out
