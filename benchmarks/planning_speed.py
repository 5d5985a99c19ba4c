"""Planning speed: ms per MPC step and candidate rollouts per second, for each planner; and ms per control
decision for each way to act (act=planner | policy | policy+planner), idle and beside a busy neighbour.

Each planner plans from a real observation toward a real goal with a world model: a checkpoint, in its own
task, or a freshly initialised model of the default pixel config in reacher-easy (speed does not depend on the
weights). The baseline, measured in the same process, is the straightforward implementation that
scores candidates one at a time in a Python loop; the ratio is loop time / batched time. A decision is what
the MPC controller does per replan (encode the history, then propose and/or plan), timed by the controller
itself; a model without a policy gets an untrained one of the default size (speed does not depend on weights).
The busy neighbour is a torch training loop in another process (benchmarks/contention.py's).

    python benchmarks/planning_speed.py                     # CPU
    python benchmarks/planning_speed.py device=cuda --write # and record in BENCHMARKS.md
"""

from __future__ import annotations

import os
import statistics
import sys
import time

import torch

from _report import machine_description, timed, update_benchmarks_section
from jepa_wm.data.envs import make_env
from jepa_wm.planning.costs import LatentGoalCost
from jepa_wm.planning.experiment import ACTING, build_ours, planner_from_settings, planning_env_settings
from jepa_wm.planning.planners import PLANNERS

from jepa_wm.checkpoint import load_world_model
from jepa_wm.cli import benchmark
from jepa_wm.config import (
    command_line,
    compose,
    load_group,
    model_config,
    to_dict,
)
from jepa_wm.module import JEPAWorldModel
from jepa_wm.policy import GoalPolicy, GoalPolicyNet, default_policy_settings

PLAN = compose("plan")  # the planner, horizon and cost plan.py uses
HORIZON = PLAN.mpc.horizon


def per_candidate_loop(cost_fn):
    """The baseline: the same cost, one candidate per model call."""

    def looped(candidates: torch.Tensor) -> torch.Tensor:
        return torch.cat([cost_fn(candidate[None]) for candidate in candidates])

    return looped


def time_plan(planner_name: str, cost_fn, action_dim: int, device: str, repeats: int) -> tuple[float, int]:
    """Median seconds of one planner call, and candidate sequences evaluated per call."""
    settings = to_dict(load_group("planner", planner_name))
    times, evaluations = [], 0
    for repeat in range(repeats + 1):  # the first call warms up caches and kernels, and is dropped
        planner = planner_from_settings(settings, HORIZON, action_dim, device, seed=repeat)
        seconds, result = timed(lambda: planner.plan(cost_fn), device)
        if repeat:
            times.append(seconds)
        evaluations = result.info["evaluations"]
    return statistics.median(times), evaluations


def untrained_policy(model) -> GoalPolicy:
    """A policy of the default size for ``model`` (what a decision costs does not depend on its weights)."""
    settings = default_policy_settings("gcbc")
    features = model.num_tokens * model.embed_dim
    net = GoalPolicyNet(features, model.history, HORIZON, model.action_dim, settings.hidden_dim, settings.depth)
    return GoalPolicy("gcbc", net.eval().requires_grad_(False), torch.zeros(features), torch.ones(features),
                      dict(settings.__dict__))


def untrained_learned_cost(model):
    """A learned cost of the default kind and size for ``model`` (its speed does not depend on its weights)."""
    from jepa_wm.learned_cost import CostTrainer, default_settings

    settings = default_settings(compose("train", ["data.path=none"]).learned_cost.kind)
    episodes = torch.randn(4, 21, model.num_tokens * model.embed_dim)
    return CostTrainer(episodes, settings).result().to(model.device)


def time_decisions(model, env, act: str, device: str, repeats: int, neighbour: str | None) -> float:
    """Median seconds of one control decision with ``act``, next to a busy ``neighbour`` process if given."""
    import subprocess

    from contention import HOGS, ROOT

    controller = build_ours(compose("plan", [f"act={act}"]), model, model.action_dim, model.frameskip, device)
    hog = subprocess.Popen([sys.executable, "-c", HOGS[neighbour]], cwd=ROOT) if neighbour else None
    try:
        if hog:
            time.sleep(1.0)
        times = []
        for repeat in range(repeats + 1):  # the first decision warms up, and is dropped
            controller.reset(seed=repeat)
            obs, _ = env.reset(seed=repeat)
            controller.act(env, obs)
            if repeat:
                times.append(controller.planning_seconds[-1])
    finally:
        if hog:
            hog.kill()
            hog.wait()
    return statistics.median(times)


def timing_env(model, from_checkpoint: bool) -> dict:
    """The env config timed in: a checkpoint's own task (its actions and frames: another task's would not fit
    them), reacher-easy for the untrained default model."""
    return planning_env_settings(None, model) if from_checkpoint else to_dict(load_group("env", "reacher-easy"))


def main(argv: list[str]) -> None:
    options, flags = command_line(argv, {"device": "cuda" if torch.cuda.is_available() else "cpu", "repeats": 5,
                                         "loop_repeats": 2, "decisions": 20, "checkpoint": None})
    write = "--write" in flags
    device, repeats, loop_repeats = options["device"], options["repeats"], options["loop_repeats"]
    if options["checkpoint"]:
        model = load_world_model(options["checkpoint"], device=device)
    else:
        model_cfg = model_config()
        model = JEPAWorldModel(model_cfg, (64, 64, 3), 2 * model_cfg.frameskip).world_model.eval().to(device)
    if model.learned_cost is None and compose("train", ["data.path=none"]).learned_cost.kind != "none":
        model.learned_cost = untrained_learned_cost(model)  # what a default run carries
    env_cfg = timing_env(model, from_checkpoint=bool(options["checkpoint"]))
    env = make_env(env_cfg, obs_type=model.cfg["obs_type"])
    obs, _ = env.reset(seed=0)
    cost = LatentGoalCost.from_config(model, PLAN.cost)
    cost_fn = cost.make_cost(env, [obs], [])
    latent_fn = LatentGoalCost.from_config(model, compose("plan", ["cost.name=l2"]).cost).make_cost(env, [obs], [])
    default_ms, latent_ms = [], []
    for _ in range(3):  # interleaved: the same load for both
        default_ms.append(time_plan(PLAN.planner.name, cost_fn, model.action_dim, device, repeats)[0] * 1000)
        latent_ms.append(time_plan(PLAN.planner.name, latent_fn, model.action_dim, device, repeats)[0] * 1000)
    default_ms, latent_ms = statistics.median(default_ms), statistics.median(latent_ms)
    print(f"{PLAN.planner.name} with the default cost: {default_ms:.1f} ms/step, with the latent l2 alone: {latent_ms:.1f}")

    rows = []
    for name in PLANNERS.names():
        seconds, evaluations = time_plan(name, cost_fn, model.action_dim, device, repeats)
        loop_seconds, _ = time_plan(name, per_candidate_loop(cost_fn), model.action_dim, device, loop_repeats)
        rows.append((name, evaluations, seconds * 1000, evaluations / seconds, loop_seconds * 1000, loop_seconds / seconds))
        print(f"{name}: {seconds * 1000:.1f} ms/step batched, {loop_seconds * 1000:.1f} ms/step looped")

    if model.policy is None:
        model.policy = untrained_policy(model).to(device)
    load_before = os.getloadavg()[0]
    acting = {}
    for act in ACTING:
        for neighbour in (None, "torch training"):
            acting[act, neighbour] = time_decisions(model, env, act, device, options["decisions"], neighbour) * 1000
            print(f"act={act}, {neighbour or 'idle'}: {acting[act, neighbour]:.2f} ms/decision")
    load_after = os.getloadavg()[0]
    plan = PLAN.planner
    budget = PLAN.policy_planner
    table = [
        f"Device: {device}. World model: {model.cfg['encoder']['name']} encoder, {model.cfg['predictor']['name']} "
        f"predictor, D={model.embed_dim}; horizon {HORIZON}; planner settings from configs/planner/. "
        f"Median of {repeats} batched / {loop_repeats} looped planner calls after a warm-up call.",
        "",
        "| planner | candidates per MPC step | batched ms / MPC step | candidate rollouts / s | per-candidate loop ms / MPC step | speed-up |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *[f"| {n} | {e} | {ms:.1f} | {rate:,.0f} | {loop_ms:.1f} | {ratio:.0f}x |" for n, e, ms, rate, loop_ms, ratio in rows],
        "",
        f"The default planning cost ({cost.description.removeprefix('cost: ')}) against the latent l2 alone, "
        f"{PLAN.planner.name} from plan.yaml, median of 3 interleaved medians: {default_ms:.1f} ms vs "
        f"{latent_ms:.1f} ms per MPC step ({default_ms / latent_ms:.2f}x).",
        "",
        f"Ways to act (configs/plan.yaml act=): ms per control decision (encode the history, then propose and/or "
        f"plan), median of {options['decisions']} decisions from {env_cfg['name']} starts after a warm-up one; planner = "
        f"{plan.name} {plan.samples} x {plan.iterations}, policy+planner = the policy's proposal seeding "
        f"{plan.name} {budget.samples} x {budget.iterations} (init_std {budget.init_std}). Busy neighbour: a torch "
        f"training loop in another process. Load average (1 min) before / after: {load_before:.2f} / {load_after:.2f}.",
        "",
        "| act | ms / decision, idle | ms / decision, busy neighbour | vs planner (idle) |",
        "| --- | ---: | ---: | ---: |",
        *[f"| {act} | {acting[act, None]:.2f} | {acting[act, 'torch training']:.2f} | "
          f"{acting[act, None] / acting['planner', None]:.2f}x |" for act in ACTING],
    ]
    text = "\n".join(table)
    print(text)
    if write:
        command = "python benchmarks/planning_speed.py " + " ".join(argv)
        update_benchmarks_section(f"Planning speed ({device})", text, command, machine_description(device))


if __name__ == "__main__":
    benchmark(main)
