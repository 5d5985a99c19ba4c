"""Lightning callbacks that measure what matters during training: reaching goals."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from jepa_wm.data.envs import make_env
from jepa_wm.planning.evaluate import evaluate, save_video
from jepa_wm.planning.experiment import build_controllers, plan_config, planning_env_settings


class GoalReachingEvalCallback(pl.Callback):
    """Every ``every_n_steps`` training steps, plan a few goal-reaching episodes with the current model.

    The planner, MPC schedule and cost are those of ``configs/plan.yaml`` (with ``plan_overrides``), so
    ``eval/success_rate`` measures the planner ``plan.py`` runs. Episodes come from the *dev* split
    (the same each time), never from the test episodes results are reported on. The task is the one the
    training data came from. Logs ``eval/success_rate`` and ``eval/final_distance`` (and a GIF to W&B
    when ``video``). Runs on rank 0; the other ranks wait for it at the next collective.
    """

    def __init__(self, every_n_steps: int, episodes: int = 5, plan_overrides=(), seed: int = 0, video: bool = True):
        if every_n_steps < 1 or episodes < 1:
            raise ValueError(f"need every_n_steps >= 1 and episodes >= 1; got {every_n_steps}, {episodes}")
        self.every_n_steps, self.episodes = every_n_steps, episodes
        self.plan_cfg = plan_config([*plan_overrides, f"seed={seed}", "split=dev"])
        self.seed, self.video = seed, video
        self._env = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_index) -> None:
        step = trainer.global_step
        if step == 0 or step % self.every_n_steps != 0:
            return
        # Its own progress bar where training shows one: the evaluation takes minutes where a step takes a second.
        shown = trainer.progress_bar_callback is not None
        success_rate, final_distance, video = (self.run_episodes(pl_module, progress=shown) if trainer.is_global_zero
                                               else (0.0, 0.0, None))
        metrics = {"eval/success_rate": float(success_rate), "eval/final_distance": float(final_distance)}
        # Straight to the loggers, once, at this step (the row a validation here gets): logged through
        # `pl_module.log` in this hook, Lightning repeated the value on every later training row. Checkpoint
        # selection (best.metric) reads it from the callback metrics.
        trainer.callback_metrics.update({key: torch.tensor(value) for key, value in metrics.items()})
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step - 1)
        if video is not None:
            for logger in trainer.loggers:
                if isinstance(logger, pl.loggers.WandbLogger):
                    logger.log_video("eval/episodes", [str(video)], step=step, format=["gif"])

    def run_episodes(self, model, progress: bool = False) -> tuple[float, float, Path | None]:
        if self._env is None:
            self._env = make_env(planning_env_settings(self.plan_cfg.env, model))  # eval.plan may set env.KEY=...
        controllers, _ = build_controllers(self.plan_cfg, ["ours"], model, self._env, str(model.device))
        was_training = model.training
        model.eval()
        with torch.inference_mode(False):
            records = evaluate(self._env, controllers, self.episodes, self.seed, split="dev",
                               record_episodes=1 if self.video else 0, progress=progress)["ours"]
        model.train(was_training)
        video = None
        if self.video:
            video = save_video({"ours": records}, Path(tempfile.mkdtemp()) / "eval.gif", self._env.success_threshold)
        return (float(np.mean([r.success for r in records])), float(np.mean([r.final_distance for r in records])), video)
