"""The end-to-end pipeline behind the scripts: collect -> train -> plan, each from its config.

Every script is a thin wrapper around one of these functions, so anything a script does can also be
done from Python (e.g. in a notebook) with ``jepa_wm.config.compose`` and these calls.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from omegaconf import DictConfig

from data.collect import collect_from_config
from data.datamodule import TrajectoryDataModule
from jepa_wm.checkpoint import read_checkpoint
from jepa_wm.config import as_overrides, compose, to_dict
from jepa_wm.training import fit
from planning.callbacks import GoalReachingEvalCallback
from planning.experiment import run_plan


def datamodule_from_config(cfg: DictConfig) -> TrajectoryDataModule:
    """The data module a ``configs/train.yaml``-style config asks for (window = history + rollout)."""
    model = cfg.model
    return TrajectoryDataModule(
        cfg.data.path, obs_type=model.obs_type, num_frames=model.history + model.rollout_steps,
        frameskip=model.frameskip, batch_size=cfg.data.batch_size, val_fraction=cfg.data.val_fraction,
        num_workers=cfg.data.num_workers, seed=cfg.seed,
    )


# What a dataset may ask of the models trained on it (``train_overrides`` of its env config): model settings
# with plain values. Never the output directory, the logger or anything else of the run, and never an
# interpolation (``${oc.env:...}`` would copy the trainer's environment into the run's config and checkpoint).
TASK_OVERRIDE_KEY = re.compile(r"model\.[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")


def task_train_overrides(dataset) -> list[str]:
    """``train_overrides`` of the env config a dataset was collected with: model settings its task needs.

    A dataset is input from anyone: each override must set a ``model.`` key to a plain value, or the whole
    dataset is refused (``DatasetError``) before anything is trained or written.
    """
    from data.storage import DatasetError, load_manifest

    try:
        manifest = load_manifest(dataset)
    except Exception:  # no readable dataset yet: training itself will say what is wrong with it
        return []
    overrides = manifest["env"].get("train_overrides") or []
    if not isinstance(overrides, list):
        raise DatasetError(f"{dataset}/manifest.json: env.train_overrides must be a list of key=value strings")
    for item in overrides:
        key, equals, value = str(item).partition("=")
        if not (isinstance(item, str) and equals and TASK_OVERRIDE_KEY.fullmatch(key.strip())
                and "${" not in value and "\n" not in value):
            raise DatasetError(f"{dataset}/manifest.json: env.train_overrides item {str(item)[:80]!r} is refused: a "
                               f"dataset may only set model.* keys to plain values (no interpolations)")
    return list(overrides)


def train_config(argv) -> DictConfig:
    """``configs/train.yaml`` with the dataset's task overrides (see ``configs/env/*.yaml``) first and
    the command line after them, so a user's setting always wins over the task's."""
    cfg = compose("train", list(argv))
    task = task_train_overrides(cfg.data.path)
    return compose("train", [*task, *argv]) if task else cfg


def train_from_config(cfg: DictConfig) -> Path:
    """Train as ``scripts/train.py`` does (with the goal-reaching callback if ``eval.every_n_steps``)."""
    callbacks = []
    if cfg.eval.every_n_steps:
        callbacks.append(GoalReachingEvalCallback(cfg.eval.every_n_steps, cfg.eval.episodes, list(cfg.eval.plan),
                                                  cfg.seed, cfg.eval.video))
    return fit(cfg, datamodule_from_config(cfg), callbacks=callbacks)


def trained_steps(checkpoint: Path) -> int:
    """How many optimisation steps a checkpoint has seen (0 if there is none)."""
    return int(read_checkpoint(checkpoint).get("global_step", 0)) if checkpoint.is_file() else 0


def collect_stage(env_cfg, out: Path, overrides=(), seed: int = 0, workers: int = 2, progress: bool = True) -> Path:
    """Collect (or finish collecting) a dataset of ``env_cfg``'s task into ``out``; a finished one is kept."""
    env_overrides = [f"env.{key}={'null' if value is None else value}" for key, value in to_dict(env_cfg).items()]
    cfg = compose("collect", [f"env={env_cfg['name']}", *env_overrides, f"out={out}", f"workers={workers}",
                              f"seed={seed}", f"progress={str(progress).lower()}", *overrides])
    return collect_from_config(cfg)


def train_stage(dataset: Path, run_dir: Path, overrides=(), seed: int = 0) -> Path:
    """Train (or resume) a world model until ``trainer.max_steps``; a finished run is reused. Returns last.ckpt."""
    arguments = [f"data.path={dataset}", f"out={run_dir}", f"seed={seed}", *overrides]
    cfg = train_config(arguments)
    checkpoint = run_dir / "checkpoints" / "last.ckpt"
    done = trained_steps(checkpoint)
    if done < cfg.trainer.max_steps:
        train_from_config(train_config([*arguments, "resume=true"]) if done else cfg)
    return checkpoint


def run_quickstart(cfg: DictConfig) -> dict:
    """Collect, train and plan with the sizes of ``configs/quickstart.yaml``; finished stages are reused.

    Returns the planning result (rows, table, files) plus the dataset and checkpoint paths.
    """
    size = cfg.full_size if cfg.full else cfg.small
    out = Path(cfg.out)
    dataset, run_dir = out / "dataset", out / "train"
    if cfg.fresh:
        shutil.rmtree(out, ignore_errors=True)

    print(f"[1/3] collecting {size.collect.episodes} {cfg.env.name} episodes into {dataset}")
    collect_stage(cfg.env, dataset, as_overrides(size.collect), cfg.seed, cfg.workers)

    print(f"[2/3] training a world model for {size.train.trainer.max_steps} steps into {run_dir} "
          f"(a finished run is reused)")
    checkpoint = train_stage(dataset, run_dir, as_overrides(size.train), cfg.seed).parent / size.checkpoint

    print(f"[3/3] planning on {size.plan.episodes} goal-reaching episodes: ours, random and oracle")
    plan_cfg = compose("plan", [f"checkpoint={checkpoint}", "baselines=true", f"seed={cfg.seed}",
                                f"out={out / 'plan'}", *as_overrides(size.plan)])
    result = run_plan(plan_cfg)
    result["files"] = {"dataset": dataset, "checkpoint": checkpoint, **result["files"]}
    return result
