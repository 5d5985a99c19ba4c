"""Lightning callbacks that measure what matters during training: reaching goals."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch

from data.envs import make_env
from jepa_wm.config import load_group, to_dict
from planning.costs import LatentGoalCost
from planning.evaluate import evaluate, save_video
from planning.mpc import MPCController
from planning.planners import build_planner


class GoalReachingEvalCallback(pl.Callback):
    """Every ``every_n_steps`` training steps, plan a few goal-reaching episodes with the current model.

    Logs ``eval/success_rate`` and ``eval/final_distance`` (and a GIF to W&B when ``video``). The task
    is the one the training data came from. Runs on rank 0 only; the episodes are the same each time.
    """

    def __init__(self, every_n_steps: int, episodes: int = 5, planner: str = "cem", horizon: int = 5,
                 seed: int = 0, video: bool = True):
        if every_n_steps < 1 or episodes < 1:
            raise ValueError(f"need every_n_steps >= 1 and episodes >= 1; got {every_n_steps}, {episodes}")
        self.every_n_steps, self.episodes, self.horizon = every_n_steps, episodes, horizon
        self.planner_settings = to_dict(load_group("planner", planner))
        self.seed, self.video = seed, video
        self._env = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_index) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps != 0:
            return
        success_rate, final_distance, video = self.run_episodes(pl_module) if trainer.is_global_zero else (0.0, 0.0, None)
        pl_module.log("eval/success_rate", success_rate, rank_zero_only=True)
        pl_module.log("eval/final_distance", final_distance, rank_zero_only=True)
        if video is not None:
            for logger in trainer.loggers:
                if isinstance(logger, pl.loggers.WandbLogger):
                    logger.log_video("eval/episodes", [str(video)], step=step, format=["gif"])

    def run_episodes(self, model) -> tuple[float, float, Path | None]:
        if self._env is None:
            env_settings = dict(model.hparams["env"]["config"])
            env_settings["obs_type"] = model.cfg["obs_type"]
            self._env = make_env(env_settings)
        settings = dict(self.planner_settings)
        name = settings.pop("name")
        planner = build_planner(name, self.horizon, [-1.0] * model.action_dim, [1.0] * model.action_dim,
                                device=model.device, seed=self.seed, **settings)
        controller = MPCController(planner, LatentGoalCost(model), frameskip=model.frameskip)
        was_training = model.training
        model.eval()
        with torch.inference_mode(False):
            records = evaluate(self._env, {"ours": controller}, self.episodes, self.seed,
                               record_episodes=1 if self.video else 0, progress=False)["ours"]
        model.train(was_training)
        video = None
        if self.video:
            video = save_video({"ours": records}, Path(tempfile.mkdtemp()) / "eval.gif")
        return (float(np.mean([r.success for r in records])), float(np.mean([r.final_distance for r in records])), video)
