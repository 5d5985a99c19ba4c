"""A goal-reaching evaluation from a config: env, world model, planners, baselines, report files."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import torch

from data.envs import make_env
from jepa_wm.checkpoint import load_world_model
from jepa_wm.config import load_group, to_dict
from jepa_wm.errors import CheckpointError, ConfigError
from planning.costs import LatentGoalCost, SimulatorCost
from planning.evaluate import evaluate, format_table, save_plot, save_video, summarize, write_report
from planning.mpc import MPCController, RandomController
from planning.planners import build_planner

METHODS = ("ours", "random", "oracle")


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def check_compatible(model, env) -> None:
    """A world model can only plan in an env that gives it the observations and actions it was trained on."""
    obs_type = model.cfg["obs_type"]
    spec = env.observation_spec()
    trained_on = model.hparams["env"].get("config", {}).get("name", "its training task")
    if obs_type not in spec or tuple(spec[obs_type][0]) != tuple(model.obs_shape):
        given = {key: shape for key, (shape, _) in spec.items()}
        raise CheckpointError(
            f"the checkpoint was trained on {obs_type} observations of shape {tuple(model.obs_shape)} "
            f"({trained_on}), but env {env.name} gives {given}; use a matching env (e.g. env.image_size) or checkpoint"
        )
    if model.action_dim != env.action_dim * model.frameskip:
        raise CheckpointError(
            f"the checkpoint plans {model.action_dim}-dimensional actions (frameskip {model.frameskip}) but "
            f"env {env.name} has {env.action_dim}-dimensional actions"
        )


def build_mpc(cfg, planner_settings: dict, cost_model, action_dim: int, frameskip: int, device: str) -> MPCController:
    settings = dict(planner_settings)
    name = settings.pop("name")
    planner = build_planner(name, cfg.mpc.horizon, [-1.0] * action_dim, [1.0] * action_dim, device=device,
                            seed=cfg.seed, **settings)
    return MPCController(planner, cost_model, replan_every=cfg.mpc.replan_every, frameskip=frameskip)


def run_plan(cfg) -> dict:
    """Evaluate the configured methods on the same episodes; write report, video and plot under ``cfg.out``."""
    methods = ["ours"] + (["random", "oracle"] if cfg.baselines else [])
    if cfg.checkpoint is None:
        if not cfg.baselines:
            raise ConfigError("checkpoint=PATH is required (or baselines=true to run only random and oracle)")
        methods.remove("ours")
    device = resolve_device(cfg.device)
    model = load_world_model(cfg.checkpoint, device=device) if cfg.checkpoint else None
    env_settings = to_dict(cfg.env)
    if model is not None:
        env_settings["obs_type"] = model.cfg["obs_type"]
    env = make_env(env_settings)
    frameskip = model.frameskip if model is not None else 1
    if model is not None:
        check_compatible(model, env)
    action_dim = env.action_dim * frameskip

    planner_settings = to_dict(cfg.planner)
    # The simulator is not differentiable: with the gradient planner, the oracle plans with CEM.
    oracle_settings = planner_settings if planner_settings["name"] != "gradient" else to_dict(load_group("planner", "cem"))
    controllers, planner_names = {}, {}
    for method in methods:
        if method == "ours":
            cost = LatentGoalCost(model, cfg.cost.distance, cfg.cost.steps, cfg.cost.action_penalty)
            controllers[method] = build_mpc(cfg, planner_settings, cost, action_dim, frameskip, device)
            planner_names[method] = planner_settings["name"]
        elif method == "random":
            controllers[method] = RandomController()
            planner_names[method] = None
        else:
            controllers[method] = build_mpc(cfg, oracle_settings, SimulatorCost(frameskip), action_dim, frameskip, "cpu")
            planner_names[method] = oracle_settings["name"]

    out = Path(cfg.out or Path("runs") / datetime.datetime.now().strftime("plan-%Y%m%d-%H%M%S"))
    out.mkdir(parents=True, exist_ok=True)
    records = evaluate(env, controllers, cfg.episodes, cfg.seed, record_episodes=cfg.videos, progress=cfg.progress)
    rows = [summarize(records[method], env.name, method, planner_names[method], cfg.seed) for method in methods]
    files = {
        "report": write_report(out / "report.json", rows, to_dict(cfg)),
        "plot": save_plot(rows, records, env.success_radius, out / "plot.png"),
        "video": save_video(records, out / "episodes.gif") if cfg.videos else None,
    }
    env.close()
    log_to_wandb(cfg, rows, files)
    return {"rows": rows, "table": format_table(rows), "files": files}


def log_to_wandb(cfg, rows: list[dict], files: dict) -> None:
    """Log the success table (and ``success_rate`` of ours, the planner sweep's metric) to W&B.

    Off unless ``wandb.mode`` asks for it or a sweep agent started this process.
    """
    mode = os.environ.get("WANDB_MODE", cfg.wandb.mode)
    if mode == "disabled" and "WANDB_SWEEP_ID" not in os.environ:
        return
    import wandb

    run = wandb.init(project=cfg.wandb.project, mode="offline" if mode == "disabled" else mode,
                     config=to_dict(cfg), job_type="plan", dir=str(files["report"].parent))
    metrics = {f"{row['method']}/{key}": row[key] for row in rows
               for key in ("success_rate", "final_distance", "ms_per_step")}
    headline = next((row for row in rows if row["method"] == "ours"), rows[0])
    metrics["success_rate"] = headline["success_rate"]
    metrics["results"] = wandb.Table(columns=list(rows[0]), data=[[str(v) for v in row.values()] for row in rows])
    metrics["plot"] = wandb.Image(str(files["plot"]))
    if files.get("video"):
        metrics["episodes"] = wandb.Video(str(files["video"]), format="gif")
    run.log(metrics)
    run.finish()
