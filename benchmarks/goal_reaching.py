"""Goal-reaching quality: plan.py's success table for a checkpoint, recorded in BENCHMARKS.md.

Takes plan.py's arguments (configs/plan.yaml), runs the evaluation with baselines, and writes the
table under a section named after the env and planner, together with the exact command.

    python benchmarks/goal_reaching.py checkpoint=runs/quickstart/train/checkpoints/last.ckpt episodes=50 --write
"""

from __future__ import annotations


from _report import machine_description, update_benchmarks_section
from jepa_wm.planning.experiment import run_plan

from jepa_wm.cli import benchmark
from jepa_wm.config import compose


def main(argv: list[str]) -> None:
    overrides = [arg for arg in argv if arg != "--write"]
    cfg = compose("plan", ["baselines=true", *overrides])
    result = run_plan(cfg)
    print(result["table"])
    rows = result["rows"]
    lines = [
        f"Checkpoint `{cfg.checkpoint}`; {cfg.episodes} episodes per method, the same seeded episodes "
        f"for each (seed {cfg.seed}); MPC horizon {cfg.mpc.horizon} model steps, replanning every "
        f"{cfg.mpc.replan_every}; cost {cfg.cost.distance} on the {cfg.cost.steps} step(s). The oracle cannot "
        f"use the gradient planner (the simulator is not differentiable) and uses CEM then.",
        "",
        "| method | planner | success | 95% CI | mean final distance | planning ms / MPC step |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
        *[f"| {r['method']} | {r['planner'] or '-'} | {r['success_rate']:.0%} | [{r['ci95'][0]:.0%}, {r['ci95'][1]:.0%}] "
          f"| {r['final_distance']:.3f} | {r['ms_per_step']:.1f} |" for r in rows],
    ]
    if "--write" in argv:
        command = "python benchmarks/goal_reaching.py " + " ".join(argv)
        update_benchmarks_section(f"Goal reaching: {rows[0]['env']}, {cfg.planner.name}", "\n".join(lines), command,
                                  machine_description(cfg.device if cfg.device != "auto" else "cpu"))


if __name__ == "__main__":
    benchmark(main)
