"""Why does a world model plan well or badly? Measurements beside the success rate, for one checkpoint.

- prediction: open-loop rollout error per step, relative to "nothing moves" (copying the last embedding),
  on the validation windows of the checkpoint's dataset;
- what the embedding holds: linear-probe R^2 of the goal coordinates and of the velocities (qvel), from one
  frame's embedding and from two consecutive frames' (can the predictor see the motion it must continue?);
- the cost landscape: Spearman's rank correlation between the latent cost and the oracle's true cost of
  the same candidate action sequences, at every replanning step of real MPC episodes (what the planner
  needs: ranking candidates right), and between latent and true distance to the goal along the executed
  trajectories;
- success of ours, and of the oracle at several horizons (is the horizon the limit?).

    python benchmarks/diagnose.py checkpoint=runs/suite/point_mass-easy/seed-0/checkpoints/last.ckpt episodes=20
"""

from __future__ import annotations

import json

import numpy as np
import torch
from _report import machine_description, update_benchmarks_section
from jepa_wm.data.datamodule import TrajectoryDataModule
from jepa_wm.data.envs import make_env
from jepa_wm.planning.costs import LatentGoalCost, SimulatorCost
from jepa_wm.planning.evaluate import evaluate
from jepa_wm.planning.experiment import build_controllers, planning_env_settings

from jepa_wm.checkpoint import load_world_model
from jepa_wm.cli import benchmark
from jepa_wm.config import (
    command_line,
    compose,
)
from jepa_wm.errors import ConfigError
from jepa_wm.metrics import linear_probe_r2, rank_correlation


class RankCorrelationProbe:
    """A latent cost model that, each time the MPC replans, also scores ``samples`` random candidate
    sequences with the oracle and records the rank correlation of the two costs (then plans as usual)."""

    def __init__(self, latent: LatentGoalCost, oracle: SimulatorCost, samples: int, horizon: int, seed: int = 0):
        self.latent, self.oracle, self.samples, self.horizon = latent, oracle, samples, horizon
        self.generator = torch.Generator().manual_seed(seed)
        self.correlations: list[float] = []
        self.trajectories: list[list[tuple[float, float]]] = []  # per episode: (latent, true) distance per replan

    def make_cost(self, env, observations, actions):
        latent_fn = self.latent.make_cost(env, observations, actions)
        oracle_fn = self.oracle.make_cost(env, observations, actions)
        action_dim = self.latent.model.action_dim
        candidates = torch.rand(self.samples, self.horizon, action_dim, generator=self.generator) * 2 - 1
        with torch.no_grad():
            latent, true = latent_fn(candidates).cpu(), oracle_fn(candidates).cpu()
            model = self.latent.model
            now = model.encode_target(torch.as_tensor(observations[-1][self.latent.obs_key])[None, None])[0, 0]
            goal = self.latent.goal_embedding(env.goal_obs())
        self.correlations.append(float(rank_correlation(latent, true)))
        if len(observations) == 1:
            self.trajectories.append([])
        self.trajectories[-1].append((float((now - goal).pow(2).mean()), env.distance_to_goal()))
        return latent_fn

    def trajectory_correlation(self) -> float:
        """Mean over episodes of the rank correlation of latent and true distance along the executed path."""
        values = [float(rank_correlation(*torch.tensor(path, dtype=torch.float64).T)) for path in self.trajectories
                  if len(path) >= 3]
        return float(np.mean(values)) if values else float("nan")


def validation_readings(model, env, max_batches: int = 20) -> dict:
    """Rollout error per step vs copy-last, and probes of goal coordinates and velocities."""
    run = model.hparams["run_config"]
    datamodule = TrajectoryDataModule(
        model.hparams["env"]["dataset"], obs_type=model.cfg["obs_type"],
        num_frames=model.history + model.rollout_steps, frameskip=model.frameskip, batch_size=64,
        val_fraction=run["data"]["val_fraction"], num_workers=0, seed=run["seed"])
    datamodule.setup()
    nq = env.physics.model.nq
    step_errors, copy_errors, one_frame, two_frames, positions, velocities = [], [], [], [], [], []
    with torch.no_grad():
        for index, batch in enumerate(datamodule.val_dataloader()):
            if index >= max_batches:
                break
            _, terms = model.compute_losses(batch)
            step_errors.append(terms["step_errors"])
            copy_errors.append(terms["copy_last_errors"])
            z = terms["embeddings"].flatten(2)  # (B, L, N*D)
            one_frame.append(z[:, 1])
            two_frames.append(torch.cat([z[:, 0], z[:, 1]], dim=-1))
            positions.append(batch["position"][:, 1])
            velocities.append(batch["physics"][:, 1, nq : 2 * nq])
    step = torch.stack(step_errors).mean(0) / torch.stack(copy_errors).mean(0)

    def probe(features, targets) -> float:
        x, y = torch.cat(features), torch.cat(targets)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
        half = len(x) // 2
        return float(linear_probe_r2(x[order[:half]], y[order[:half]], x[order[half:]], y[order[half:]]))

    return {
        "rollout_error_ratio_per_step": [round(float(v), 3) for v in step],
        "probe_position_r2": probe(one_frame, positions),
        "probe_velocity_r2_one_frame": probe(one_frame, velocities),
        "probe_velocity_r2_two_frames": probe(two_frames, velocities),
    }


def main(argv: list[str]) -> None:
    own = {"checkpoint": "", "episodes": 20, "samples": 64, "oracle_horizons": [5, 10]}
    mine = [arg for arg in argv if arg.split("=", 1)[0] in own or "=" not in arg]
    options, flags = command_line(mine, own)
    write = "--write" in flags
    if not options["checkpoint"]:
        raise ConfigError("checkpoint=PATH is required")
    checkpoint, episodes, samples, horizons = (options["checkpoint"], options["episodes"], options["samples"],
                                               options["oracle_horizons"])
    plan_overrides = [arg for arg in argv if arg not in mine]  # the rest set configs/plan.yaml, checked there
    plan = compose("plan", [f"checkpoint={checkpoint}", f"episodes={episodes}", "split=dev", "videos=0",
                            "progress=false", *plan_overrides])
    model = load_world_model(checkpoint)
    env = make_env(planning_env_settings(plan.env, model))
    readings = {"checkpoint": checkpoint, "task": env.name, **validation_readings(model, env)}

    controllers, _ = build_controllers(plan, ["ours"], model, env, "cpu")
    ours = controllers["ours"]
    probe = RankCorrelationProbe(ours.cost_model, SimulatorCost(model.frameskip, plan.cost.steps), samples,
                                 plan.mpc.horizon)
    ours.cost_model = probe
    records = evaluate(env, {"ours": ours}, episodes, plan.seed, split="dev", progress=False)["ours"]
    readings["ours_success"] = float(np.mean([r.success for r in records]))
    readings["ours_final_distance"] = float(np.mean([r.final_distance for r in records]))
    readings["cost_rank_correlation"] = float(np.mean(probe.correlations))
    readings["trajectory_distance_rank_correlation"] = probe.trajectory_correlation()
    for horizon in horizons:
        oracle_plan = compose("plan", [f"checkpoint={checkpoint}", f"mpc.horizon={horizon}", *plan_overrides])
        oracle = build_controllers(oracle_plan, ["oracle"], model, env, "cpu")[0]
        oracle_records = evaluate(env, oracle, episodes, plan.seed, split="dev", progress=False)["oracle"]
        readings[f"oracle_success_horizon_{horizon}"] = float(np.mean([r.success for r in oracle_records]))
    env.close()
    print(json.dumps(readings, indent=2))
    if write:
        rows = "\n".join(f"| {key} | {value} |" for key, value in readings.items())
        update_benchmarks_section(f"Diagnosis: {env.name}", f"{episodes} dev episodes.\n\n| reading | value |\n| --- | --- |\n{rows}",
                                  "python benchmarks/diagnose.py " + " ".join(argv), machine_description("cpu"))
    return readings


if __name__ == "__main__":
    benchmark(main)
