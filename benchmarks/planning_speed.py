"""Planning speed: ms per MPC step and candidate rollouts per second, for each planner.

Each planner plans from a real reacher-easy observation toward a real goal with a world model (a
checkpoint, or a freshly initialised model of the default pixel config: speed does not depend on the
weights). The baseline, measured in the same process, is the straightforward implementation that
scores candidates one at a time in a Python loop; the ratio is loop time / batched time.

    python benchmarks/planning_speed.py                     # CPU
    python benchmarks/planning_speed.py device=cuda --write # and record in BENCHMARKS.md
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_description, update_benchmarks_section  # noqa: E402
from jepa_wm.data.envs import make_env  # noqa: E402
from jepa_wm.planning.costs import LatentGoalCost  # noqa: E402
from jepa_wm.planning.experiment import planner_from_settings  # noqa: E402
from jepa_wm.planning.planners import PLANNERS  # noqa: E402

from jepa_wm.checkpoint import load_world_model  # noqa: E402
from jepa_wm.cli import benchmark  # noqa: E402
from jepa_wm.config import (  # noqa: E402
    command_line,  # noqa: E402
    compose,
    load_group,
    model_config,
    to_dict,
)
from jepa_wm.module import JEPAWorldModel  # noqa: E402

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
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        result = planner.plan(cost_fn)
        if device == "cuda":
            torch.cuda.synchronize()
        if repeat:
            times.append(time.perf_counter() - start)
        evaluations = result.info["evaluations"]
    return statistics.median(times), evaluations


def main(argv: list[str]) -> None:
    options, flags = command_line(argv, {"device": "cuda" if torch.cuda.is_available() else "cpu", "repeats": 5,
                                         "loop_repeats": 2, "checkpoint": None})
    write = "--write" in flags
    device, repeats, loop_repeats = options["device"], options["repeats"], options["loop_repeats"]
    if options["checkpoint"]:
        model = load_world_model(options["checkpoint"], device=device)
    else:
        model_cfg = model_config()
        model = JEPAWorldModel(model_cfg, (64, 64, 3), 2 * model_cfg.frameskip).eval().to(device)
    env = make_env(to_dict(load_group("env", "reacher-easy")), obs_type=model.cfg["obs_type"])
    obs, _ = env.reset(seed=0)
    cost_fn = LatentGoalCost.from_config(model, PLAN.cost).make_cost(env, [obs], [])

    rows = []
    for name in PLANNERS.names():
        seconds, evaluations = time_plan(name, cost_fn, model.action_dim, device, repeats)
        loop_seconds, _ = time_plan(name, per_candidate_loop(cost_fn), model.action_dim, device, loop_repeats)
        rows.append((name, evaluations, seconds * 1000, evaluations / seconds, loop_seconds * 1000, loop_seconds / seconds))
        print(f"{name}: {seconds * 1000:.1f} ms/step batched, {loop_seconds * 1000:.1f} ms/step looped")

    table = [
        f"Device: {device}. World model: {model.cfg['encoder']['name']} encoder, {model.cfg['predictor']['name']} "
        f"predictor, D={model.embed_dim}; horizon {HORIZON}; planner settings from configs/planner/. "
        f"Median of {repeats} batched / {loop_repeats} looped planner calls after a warm-up call.",
        "",
        "| planner | candidates per MPC step | batched ms / MPC step | candidate rollouts / s | per-candidate loop ms / MPC step | speed-up |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
        *[f"| {n} | {e} | {ms:.1f} | {rate:,.0f} | {loop_ms:.1f} | {ratio:.0f}x |" for n, e, ms, rate, loop_ms, ratio in rows],
    ]
    text = "\n".join(table)
    print(text)
    if write:
        command = "python benchmarks/planning_speed.py " + " ".join(argv)
        update_benchmarks_section(f"Planning speed ({device})", text, command, machine_description(device))


if __name__ == "__main__":
    benchmark(main)
