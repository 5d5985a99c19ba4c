"""A goal-reaching evaluation from a plan config: env, world model, planners, baselines, report files.

``configs/plan.yaml`` is the one definition of how we plan (planner, MPC schedule, cost): ``plan.py``,
the training-time evaluation callback and the benchmarks all build their controllers here from it.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

import torch
from jepa_wm.data.envs import make_env
from jepa_wm.data.envs.tasks import PLANNING_KEYS, dynamics_differences
from jepa_wm.planning.costs import EnsembleGoalCost, LatentGoalCost, PolicyProposer, SimulatorCost
from jepa_wm.planning.evaluate import (
    distance_unit,
    most_split_joint,
    evaluate,
    format_table,
    save_plot,
    save_video,
    summarize,
    write_report,
)
from jepa_wm.planning.mpc import MPCController, RandomController
from jepa_wm.planning.planners import PLANNERS, build_planner
from omegaconf import DictConfig

from jepa_wm.checkpoint import load_world_model
from jepa_wm.references import is_reference, reference_name, resolve_checkpoint
from jepa_wm.config import compose, group_choices, load_group, to_dict
from jepa_wm.errors import CheckpointError, ConfigError, did_you_mean
from jepa_wm.files import DirectoryLock, check_output_directory, file_sha256
from jepa_wm.seeds import SPLIT_STREAMS

METHODS = ("ours", "random", "oracle")


def resolve_device(name: str) -> str:
    """``device=`` as a torch device name: ``auto`` picks a GPU when there is one; a device this machine lacks
    (``cuda`` without a GPU, ``tpu``) is a ``ConfigError`` naming what is there."""
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError, TypeError):
        raise ConfigError(f"device={name} is not a torch device; use auto, cpu or cuda (cuda:N)") from None
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available.get(device.type, False):
        raise ConfigError(f"device={name} is not available on this machine; use device=auto or device=cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device={name} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return name


def checkpoint_env(model) -> dict:
    """The env config of the task a world model's training data came from."""
    return dict(model.hparams["env"].get("config") or {})


def planning_env_settings(env_cfg, model) -> dict:
    """The env a world model plans in: its own task, with the evaluation settings ``env_cfg`` gives.

    ``env_cfg`` is ``None`` (the checkpoint's task as it is), an overlay of some keys
    (``env.episode_length=100``), or a whole env config (``env=reacher-hard``). Settings that change the
    dynamics, actions or camera must match the checkpoint's; the observation type is the model's.
    """
    trained = checkpoint_env(model)
    given = {} if env_cfg is None else to_dict(env_cfg)
    requested = {**trained, **given}
    if "obs_type" in given and "domain" not in given and given["obs_type"] != model.cfg["obs_type"]:
        raise ConfigError(f"env.obs_type={given['obs_type']} but the checkpoint's model reads "
                          f"{model.cfg['obs_type']} observations; drop env.obs_type")
    requested["obs_type"] = model.cfg["obs_type"]
    for key in PLANNING_KEYS:  # not in the data the checkpoint was trained on: its task's choice as it stands
        if key not in requested and requested.get("name") in group_choices("env"):
            requested[key] = to_dict(load_group("env", requested["name"])).get(key)
    differences = dynamics_differences(trained, requested)
    if differences:
        raise ConfigError(
            f"the checkpoint was trained on {trained.get('name', 'another task')}, and env "
            f"{requested.get('name')} differs in {'; '.join(differences)}; drop env= to plan in the "
            f"checkpoint's own task, or use a checkpoint trained on {requested.get('name')}"
        )
    return requested


def check_compatible(model, env) -> None:
    """A world model can only plan in an env that gives it the observations and actions it was trained on."""
    obs_type = model.cfg["obs_type"]
    spec = env.observation_spec()
    trained_on = checkpoint_env(model).get("name", "its training task")
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


def planner_from_settings(planner_settings: dict, horizon: int, action_dim: int, device: str, seed: int | None):
    """A planner from a ``configs/planner/`` section, over model actions in [-1, 1]."""
    settings = dict(planner_settings)
    name = settings.pop("name")
    try:
        return build_planner(name, horizon, [-1.0] * action_dim, [1.0] * action_dim, device=device, seed=seed,
                             **settings)
    except ValueError as error:
        raise ConfigError(f"planner settings: {error}") from error


def build_mpc(plan_cfg, planner_settings: dict | None, cost_model, action_dim: int, frameskip: int, device: str,
              proposer=None) -> MPCController:
    """MPC with the plan config's planner (None: the proposer alone), horizon and replanning schedule (actions in
    [-1, 1])."""
    planner = None
    if planner_settings is not None:
        planner = planner_from_settings(planner_settings, plan_cfg.mpc.horizon, action_dim, device, plan_cfg.seed)
    try:
        return MPCController(planner, cost_model, replan_every=plan_cfg.mpc.replan_every, frameskip=frameskip,
                             proposer=proposer)
    except ValueError as error:
        raise ConfigError(f"mpc settings: {error}") from error


def how_to_train_a_policy(checkpoint, model) -> str:
    """The commands that give ``checkpoint`` a policy, with the time they take: a shipped or downloaded model
    first needs its task's data (its own training data is not shipped) and a copy to store the policy in."""
    reference = str(checkpoint)
    if not is_reference(reference):
        return (f"train one with `jepa-wm train-policy checkpoint={reference}` (distill: about 2-5 minutes on 2 CPU "
                f"cores)")
    task = model.hparams.get("env", {}).get("config", {}).get("name", "TASK")
    name = reference_name(reference) or task
    return (f"train one (about 5-8 minutes on 2 CPU cores) with `jepa-wm collect env={task} out=datasets/{task}` and "
            f"`jepa-wm train-policy checkpoint={reference} data.path=datasets/{task} out=runs/policies/{name}.ckpt`, "
            f"then plan with checkpoint=runs/policies/{name}.ckpt")


ACTING = ("planner", "policy", "policy+planner")  # act=: the slow system, the fast one, or the fast seeding the slow


def ensemble_cost(plan_cfg, model, members, task_costs: dict | None = None) -> LatentGoalCost | EnsembleGoalCost:
    """The plan config's cost under ``model``, or, with ensemble ``members``, its mean under all of them
    (``task_costs``: the env config's ``planning_cost``, what ``auto`` means in this task)."""
    cost = LatentGoalCost.from_config(model, plan_cfg.cost, task_costs)
    if not members:
        return cost
    costs = [cost] + [LatentGoalCost.from_config(member, plan_cfg.cost, task_costs) for member in members]
    differing = sorted({member.description for member in costs} - {cost.description})
    if differing:
        raise ValueError(f"the ensemble's models plan with different costs ({cost.description}; {'; '.join(differing)}): "
                         f"train the same learned cost into each (jepa-wm train-cost), or name one with cost.name")
    return EnsembleGoalCost(costs, float(plan_cfg.cost.get("disagreement", 0.0)))


def load_ensemble(plan_cfg, model, env, device: str) -> list:
    """The world models ``ensemble=[...]`` names besides the checkpoint's: of its task, frameskip and actions."""
    members = []
    for reference in plan_cfg.get("ensemble") or []:  # a list: the config refuses anything else
        member = load_world_model(reference, device=device)
        check_compatible(member, env)
        differences = dynamics_differences(checkpoint_env(model), checkpoint_env(member))
        if differences:
            raise ConfigError(f"ensemble member {reference} was trained on another task than the checkpoint "
                              f"({'; '.join(differences)}): an ensemble's models must share a task's dynamics")
        if member.frameskip != model.frameskip:
            raise ConfigError(f"ensemble member {reference} acts every {member.frameskip} env steps and the checkpoint "
                              f"every {model.frameskip}: an ensemble's models must share a frameskip")
        members.append(member)
    return members


def build_ours(plan_cfg, model, action_dim: int, frameskip: int, device: str, members=(),
               task_costs: dict | None = None) -> MPCController:
    """Our controller as ``act`` asks: MPC with the planner, the checkpoint's policy alone, or the policy's proposal
    seeding the planner (run with ``policy_planner``'s smaller budget). With ensemble ``members``, the planner's
    cost is the mean over the checkpoint's model and theirs; ``task_costs`` is what ``cost.name=auto`` means in the
    task (its env config's ``planning_cost``)."""
    if plan_cfg.act not in ACTING:
        raise ConfigError(f"unknown act={plan_cfg.act}{did_you_mean(plan_cfg.act, ACTING)} (choices: {', '.join(ACTING)})")
    if "policy" in plan_cfg.act and model.policy is None:
        raise ConfigError(f"act={plan_cfg.act} needs a checkpoint with a policy, and {plan_cfg.checkpoint} has none: "
                          f"{how_to_train_a_policy(plan_cfg.checkpoint, model)}; or plan with act=planner")
    try:
        cost = ensemble_cost(plan_cfg, model, members, task_costs)
        proposer = PolicyProposer(model, cost, plan_cfg.mpc.horizon) if "policy" in plan_cfg.act else None
    except ValueError as error:
        raise ConfigError(f"{'act' if 'policy' in str(error) else 'cost'} settings: {error}") from error
    planner_settings = to_dict(plan_cfg.planner)
    if plan_cfg.act == "policy":
        planner_settings = None
    elif plan_cfg.act == "policy+planner":
        budget = {key: value for key, value in to_dict(plan_cfg.policy_planner).items() if key in planner_settings}
        planner_settings = {**planner_settings, **budget}  # the keys this planner has
    return build_mpc(plan_cfg, planner_settings, cost, action_dim, frameskip, device, proposer)


def oracle_planner_settings(planner_settings: dict, fallback: str) -> dict:
    """The oracle's planner: ours, unless ours needs a differentiable cost, which the simulator is not: then
    the plan config's ``oracle_planner``."""
    return to_dict(load_group("planner", fallback)) if PLANNERS[planner_settings["name"]].needs_gradients else planner_settings


def build_controllers(plan_cfg, methods, model, env, device: str, members=()) -> tuple[dict, dict]:
    """Controllers (and planner names) of ``methods`` for one env, all from the plan config (``members``: the
    ensemble's other world models)."""
    frameskip = model.frameskip if model is not None else int(plan_cfg.mpc.frameskip or load_group("model", "pixels").frameskip)
    action_dim = env.action_dim * frameskip
    planner_settings = to_dict(plan_cfg.planner)
    controllers, planner_names = {}, {}
    for method in methods:
        if method == "ours":
            controllers[method] = build_ours(plan_cfg, model, action_dim, frameskip, device, members,
                                             getattr(env, "planning_cost", None))
            planner_names[method] = {"policy": "policy", "policy+planner": f"policy+{planner_settings['name']}"}.get(
                plan_cfg.act, planner_settings["name"])
        elif method == "random":
            controllers[method] = RandomController()
            planner_names[method] = None
        else:
            settings = oracle_planner_settings(planner_settings, plan_cfg.oracle_planner)
            try:
                cost = SimulatorCost(frameskip, plan_cfg.cost.steps, pose=plan_cfg.oracle_cost)
            except ValueError as error:
                raise ConfigError(str(error)) from None
            controllers[method] = build_mpc(plan_cfg, settings, cost, action_dim, frameskip, "cpu")
            planner_names[method] = settings["name"]
    return controllers, planner_names


# What a planning report directory holds (W&B's folder when it logs): what may be deleted as a report's.
PLAN_FILES = ("report.json", "plot.png", "episodes.gif", "wandb")


def plan_config(overrides=()) -> DictConfig:
    """``configs/plan.yaml`` with overrides: for callers that plan without a command line."""
    return compose("plan", list(overrides))


def run_plan(cfg) -> dict:
    """Evaluate the configured methods on the same episodes; write report, video and plot under ``cfg.out``."""
    methods = [method for method in cfg.methods] if cfg.get("methods") else ["ours"] + (["random", "oracle"] if cfg.baselines else [])
    if cfg.checkpoint is None:
        if not cfg.baselines:
            raise ConfigError("checkpoint=PATH is required (or baselines=true with env=NAME to run only random and oracle)")
        methods = [method for method in methods if method != "ours"]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        raise ConfigError(f"unknown method(s) {unknown} (choices: {', '.join(METHODS)})")
    if cfg.split not in SPLIT_STREAMS:
        raise ConfigError(f"unknown split '{cfg.split}'{did_you_mean(cfg.split, SPLIT_STREAMS)} "
                          f"(choices: {', '.join(SPLIT_STREAMS)}: tune on dev, report test)")
    out = check_output_directory(cfg.out or Path("runs") / datetime.datetime.now().strftime("plan-%Y%m%d-%H%M%S"))
    device = resolve_device(cfg.device)
    model = load_world_model(cfg.checkpoint, device=device) if cfg.checkpoint else None
    if model is not None:
        env_settings = planning_env_settings(cfg.env, model)
    elif cfg.env is None or "domain" not in cfg.env:
        raise ConfigError("without a checkpoint, name the task: env=NAME (a file of configs/env/)")
    else:
        env_settings = to_dict(cfg.env)
    env = make_env(env_settings)  # settings it refuses are a ConfigError naming the env
    members = []
    if model is not None:
        check_compatible(model, env)
        members = load_ensemble(cfg, model, env, device) if "ours" in methods else []
    elif cfg.get("ensemble"):
        raise ConfigError("ensemble=[...] adds world models to checkpoint=PATH's; name the checkpoint too")
    controllers, planner_names = build_controllers(cfg, methods, model, env, device, members)

    out.mkdir(parents=True, exist_ok=True)
    unit = distance_unit(env.success.metric)
    with DirectoryLock(out, "a planning report"):  # report, plot and video of one run, never of two
        records = evaluate(env, controllers, cfg.episodes, cfg.seed, record_episodes=cfg.videos,
                           progress=cfg.progress, split=cfg.split)
        rows = [summarize(records[method], env.name, method, planner_names[method], cfg.seed, cfg.split)
                for method in methods]
        cost = controllers["ours"].cost_model.description if "ours" in controllers else None
        files = {
            "report": write_report(out / "report.json", rows, {**to_dict(cfg), "env": env_settings}, cost=cost,
                                   unit=unit, checkpoint_sha256=checkpoint_sha256(cfg.checkpoint),
                                   **ensemble_sha256(cfg)),
            "plot": save_plot(rows, records, env.success_threshold, out / "plot.png", unit),
            "video": save_video(records, out / "episodes.gif", env.success_threshold) if cfg.videos else None,
        }
    env.close()
    log_to_wandb(cfg, rows, files)
    return {"rows": rows, "table": report_table(rows, unit, cost), "files": files, "records": records, "cost": cost}


def report_table(rows: list[dict], unit: str, cost: str | None) -> str:
    """The printed result: the success table, and what ours planned with (or that its policy acted alone)."""
    ours = next((row for row in rows if row["method"] == "ours"), None)
    if ours is not None and ours.get("planner") == "policy":
        return format_table(rows, unit) + "\nours acts with the checkpoint's policy alone (act=policy: no planner, no cost)"
    return format_table(rows, unit) + "".join(goal_move_lines(rows)) + (
        f"\nours plans with the {cost.removeprefix('cost: ')}" if cost else "")


def goal_move_lines(rows: list[dict]) -> list[str]:
    """Per method, success where the goal moves a success joint and where it keeps it, for the joint where the two
    differ most (``"\nours: hinge 11 of 18 goals that move it, 11 of 12 that keep it"``); none for other tasks."""
    lines = []
    for row in rows:
        split = row.get("by_goal_move")
        if not split:
            continue
        joint = most_split_joint(split)
        (moved, of_moved), (kept, of_kept) = split[joint]["moved"], split[joint]["kept"]
        lines.append(f"\n{row['method']}: {joint} reached in {moved} of {of_moved} goals that move it, "
                     f"{kept} of {of_kept} that keep it")
    return lines


def checkpoint_sha256(reference) -> str | None:
    """The sha256 of the checkpoint file a plan config names: which weights a report is about."""
    return file_sha256(resolve_checkpoint(reference)) if reference else None


def ensemble_sha256(cfg) -> dict:
    """The sha256 of each ensemble member's checkpoint file, for the report (nothing without an ensemble)."""
    members = cfg.get("ensemble") or []
    return {"ensemble_sha256": [checkpoint_sha256(reference) for reference in members]} if members else {}


def planned_with_env_settings(saved_env: dict, env_cfg, methods=None) -> bool:
    """Whether a report's env settings hold every setting ``env_cfg`` (a plan config's ``env``) gives now.

    A report records the settings it planned in: the checkpoint's task with the given ones on top (the
    observation type is always the model's). A setting the report lacks counts as null (it predates the key).
    Random and the oracle never read the task's planning settings (``planning_cost``): only ours' reports compare them.
    """
    given = to_dict(env_cfg) if env_cfg is not None else {}
    skip = {"obs_type", *(() if "ours" in (methods or ["ours"]) else PLANNING_KEYS)}
    return all(saved_env.get(key) == value for key, value in given.items() if key not in skip)


# Plan settings added after reports were written, at the values that plan as those reports did.
LATER_DEFAULTS, LATER_COST_DEFAULTS = {"ensemble": []}, {"disagreement": 0.0}


def with_later_defaults(config: dict) -> dict:
    """A report's plan config with the settings it predates at the values it planned with."""
    config = {**LATER_DEFAULTS, **config}
    if isinstance(config.get("cost"), dict):
        config["cost"] = {**LATER_COST_DEFAULTS, **config["cost"]}
    return config


def finished_report(cfg, out: Path) -> dict | None:
    """The result of an earlier run of this very plan config in ``out`` (same settings, same checkpoint file
    contents), as ``run_plan`` returns it (without per-episode records); None when there is none."""
    try:
        report = json.loads((out / "report.json").read_text())
        config, rows, unit = report["config"], report["results"], report["unit"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    wanted = {key: value for key, value in to_dict(cfg).items() if key != "env"}
    if {key: value for key, value in with_later_defaults(config).items() if key != "env"} != wanted or \
            not planned_with_env_settings(config.get("env") or {}, cfg.env, cfg.get("methods")) or \
            report.get("checkpoint_sha256") != checkpoint_sha256(cfg.checkpoint) or \
            report.get("ensemble_sha256") != ensemble_sha256(cfg).get("ensemble_sha256"):
        return None
    files = {"report": out / "report.json", "plot": out / "plot.png", "video": out / "episodes.gif"}
    files = {kind: path if path.is_file() else None for kind, path in files.items()}
    return {"rows": rows, "table": report_table(rows, unit, report.get("cost")), "files": files,
            "cost": report.get("cost")}


def log_to_wandb(cfg, rows: list[dict], files: dict) -> None:
    """Log the success table (and ``success_rate`` of ours, the planner sweep's metric) to W&B.

    Off unless ``wandb.mode`` asks for it or a sweep agent started this process (``WANDB_MODE`` then
    picks online or offline, and ``WANDB_MODE=disabled`` turns it off).
    """
    if cfg.wandb.mode == "disabled" and "WANDB_SWEEP_ID" not in os.environ:
        return
    mode = os.environ.get("WANDB_MODE", cfg.wandb.mode)
    if os.environ.get("WANDB_MODE") == "disabled":
        return
    import wandb

    run = wandb.init(project=cfg.wandb.project, mode="offline" if mode == "disabled" else mode,
                     config=to_dict(cfg), job_type="plan", dir=str(files["report"].parent))
    metrics = {f"{row['method']}/{key}": row[key] for row in rows
               for key in ("success_rate", "success_at_end_rate", "final_distance", "ms_per_step")}
    headline = next((row for row in rows if row["method"] == "ours"), rows[0])
    metrics["success_rate"] = headline["success_rate"]
    metrics["results"] = wandb.Table(columns=list(rows[0]), data=[[str(v) for v in row.values()] for row in rows])
    metrics["plot"] = wandb.Image(str(files["plot"]))
    if files.get("video"):
        metrics["episodes"] = wandb.Video(str(files["video"]), format="gif")
    run.log(metrics)
    run.finish()
