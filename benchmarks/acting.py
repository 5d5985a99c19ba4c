"""Fast and slow: per task, the success and ms per decision of each way to act, on the same episodes.

For every world model of the cost study (``configs/acting.yaml``: one history candidate with its learned cost,
every training seed) a goal-conditioned policy of each kind is trained into a copy of its checkpoint
(``checkpoints/last-<cost kind>-<policy kind>.ckpt``, ``jepa_wm.pipeline.train_policy_for_checkpoint``), then
every task is played with each way to act: the planner (the cost study's own evaluation, reused), a policy
alone, and the policy seeding a small planner. Random and the oracle are the suite's, on the same episodes.

    python benchmarks/acting.py "tasks=[reacher-easy,reacher-offset25]" "seeds=[0,1,2]"
    python benchmarks/acting.py stages=[report] --write
"""

from __future__ import annotations

from pathlib import Path

import costs
import suite
from _study import Study, evaluate

from jepa_wm.cli import benchmark
from jepa_wm.config import as_overrides, compose, load_group, to_dict
from jepa_wm.errors import ConfigError
from jepa_wm.pipeline import train_policy_for_checkpoint
from jepa_wm.policy import PolicySettings

SECTION = "Fast and slow: planner, policy, policy + planner (cpu)"


def way_name(cfg, way: str) -> str:
    """Where a way's reports go: the planner shares the cost study's."""
    name = costs.model_name(cfg.candidate, cfg.cost)
    return name if cfg.ways[way].policy == "none" else f"{name}~{way}"


def checkpoint_of(cfg, run: Path, policy: str) -> Path:
    """The cost study's checkpoint of ``run`` (with its learned cost), or its copy with a policy of ``policy``."""
    base = costs.checkpoint_with_cost(run, cfg.costs[cfg.cost].learned_cost, cfg.checkpoint)
    return base if policy == "none" else base.with_name(f"{base.stem}-{policy}.ckpt")


STAGES = ("train", "evaluate", "report")


def main(argv: list[str]) -> None:
    study = Study("acting", argv, STAGES)
    cfg, out = study.cfg, study.out
    if cfg.candidate not in cfg.candidates or cfg.cost not in cfg.costs:
        raise ConfigError(f"candidate={cfg.candidate} and cost={cfg.cost} must name a history candidate "
                          f"({', '.join(cfg.candidates)}) and a cost of configs/costs.yaml ({', '.join(cfg.costs)})")
    plan = as_overrides(cfg.plan)
    kinds = sorted({spec.policy for spec in cfg.ways.values()} - {"none"})
    for group, tasks in suite.task_groups(list(cfg.tasks)).items():
        for seed in cfg.seeds:
            run = suite.run_directory(out, group, cfg.candidate, seed)
            if not checkpoint_of(cfg, run, "none").is_file():
                print(f"[{group} {cfg.candidate} seed {seed}] no model with the {cfg.cost} cost yet: run "
                      f"benchmarks/costs.py for it first", flush=True)
                continue
            if study.wants("train"):
                for kind in kinds:
                    path = checkpoint_of(cfg, run, kind)
                    if not path.is_file():
                        settings = PolicySettings.from_config(to_dict(load_group("policy", kind)))
                        study.run(f"policy {kind} {group} {cfg.candidate} seed {seed}", train_policy_for_checkpoint,
                                  checkpoint_of(cfg, run, "none"), settings, out=path, progress=False)
            if not study.wants("evaluate"):
                continue
            for task in tasks:
                for schedule in cfg.planned:
                    for split, episodes in cfg.splits.items():
                        if not episodes:
                            continue
                        results = suite.results_directory(out, split, task, schedule)
                        for way, spec in cfg.ways.items():
                            checkpoint = checkpoint_of(cfg, run, spec.policy)
                            if not checkpoint.is_file():
                                continue
                            study.run(f"evaluate {task} {schedule} {split} {way_name(cfg, way)} seed {seed}",
                                      evaluate, results / way_name(cfg, way) / f"seed-{seed}",
                                      [f"checkpoint={checkpoint}", f"env={task}", *plan, f"split={split}",
                                       f"episodes={episodes}", *cfg.schedules[schedule],
                                       *cfg.costs[cfg.cost].plan, *spec.plan])
    study.report(SECTION, lambda: report(study.report_cfg, out))


def report(cfg, out: Path) -> str:
    budget = compose("plan").policy_planner
    lines = [
        f"World model {cfg.candidate} planning with {cfg.cost} (the cost study's), per training seed a policy of "
        f"each kind trained into its checkpoint from the model's own training episodes (`configs/policy/`): gcbc "
        f"regresses the data's actions toward relabelled goals, distill the planner's plans from the same states. "
        f"policy+planner: the policy's proposal seeds CEM {budget.samples} x {budget.iterations}. ms per decision "
        f"as the evaluation measured it (encode, propose and/or plan; other jobs may have shared the cores: "
        f"benchmarks/planning_speed.py times them alone).",
        "",
        "Ours as mean +- std over training seeds [pooled 95% Wilson interval].",
        "",
        "| task | schedule | split | act | seeds | success | random | oracle | ours / oracle | ms / decision |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for task in cfg.tasks:
        for schedule in cfg.planned:
            for split, episodes in cfg.splits.items():
                if not episodes:
                    continue
                for way in cfg.ways:
                    s = suite.summarize_task(suite.results_directory(out, split, task, schedule),
                                             way_name(cfg, way), cfg.seeds)
                    if not s:
                        continue
                    ratio = s["mean"] / s["oracle"] if s["oracle"] > 0 else float("nan")
                    lines.append(f"| {task} | {schedule} | {split} | {way} | {s['seeds']} | {s['mean']:.0%} +- "
                                 f"{s['std']:.0%} [{s['pooled_ci95'][0]:.0%}, {s['pooled_ci95'][1]:.0%}] | "
                                 f"{s['random']:.0%} | {s['oracle']:.0%} | {ratio:.2f} | {s['ms_per_step']:.1f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    benchmark(main)
