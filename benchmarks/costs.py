"""Which planning cost knows the way? The latent distance against learned costs, on the same world models.

For every world model of the history study (``configs/history.yaml``: candidates x training seeds, on the suite's
data) a learned cost of each kind in ``configs/costs.yaml`` is trained on the model's own training episodes
(``checkpoints/last-<kind>.ckpt``: the model's checkpoint with that cost inside), and every task is planned with
every cost (the latent L2 distance, a learned cost alone, and their sum) and both planner schedules. Dev
episodes choose the default (candidate and cost together); test episodes report it. Random and the oracle are
the history study's, on the same episodes.

    python benchmarks/costs.py "tasks=[finger-spin]" "seeds=[0]" "stages=[train,evaluate]"
    python benchmarks/costs.py stages=[report] --write
"""

from __future__ import annotations

import statistics
from pathlib import Path

import history
import suite
from _report import pyplot, save_figure
from _study import Study, evaluate, only_these

from jepa_wm.cli import benchmark
from jepa_wm.config import as_overrides, load_group, to_dict
from jepa_wm.learned_cost import CostTrainingSettings
from jepa_wm.pipeline import train_cost_for_checkpoint, train_stage

FIGURE = Path(__file__).resolve().parent / "figures" / "costs.png"
SECTION = "Planning costs: latent distance vs learned (cpu)"


def checkpoint_with_cost(run: Path, kind: str, checkpoint: str) -> Path:
    """The run's checkpoint, or its copy carrying a learned cost of ``kind``."""
    path = run / "checkpoints" / checkpoint
    return path if kind == "none" else path.with_name(f"{path.stem}-{kind}.ckpt")


def model_name(candidate: str, cost: str) -> str:
    """Where a (candidate, cost) pair's reports go; the latent distance shares the history study's."""
    return candidate if cost == "l2" else f"{candidate}@{cost}"


def selected_costs(cfg) -> dict:
    """The costs this run works on and chooses among: ``only_costs`` of them, or all."""
    return only_these(cfg.costs, cfg.only_costs, "only_costs", "costs")


STAGES = ("train", "evaluate", "report")


def main(argv: list[str]) -> None:
    study = Study("costs", argv, STAGES)
    cfg, out = study.cfg, study.out
    train, plan = as_overrides(cfg.train), as_overrides(cfg.plan)
    kinds = sorted({spec.learned_cost for spec in selected_costs(cfg).values()} - {"none"})
    for group, tasks in suite.task_groups(list(cfg.tasks)).items():
        for candidate, candidate_overrides in history.selected(cfg).items():
            for seed in cfg.seeds:
                run = suite.run_directory(out, group, candidate, seed)
                if study.wants("train"):
                    study.run(f"train {group} {candidate} seed {seed}", train_stage, out / group / "dataset", run,
                              [*train, *candidate_overrides], seed)
                    for kind in kinds:
                        path = checkpoint_with_cost(run, kind, cfg.checkpoint)
                        if not path.is_file():
                            settings = CostTrainingSettings.from_config(to_dict(load_group("learned_cost", kind)))
                            study.run(f"learned cost {kind} {group} {candidate} seed {seed}", train_cost_for_checkpoint,
                                      run / "checkpoints" / cfg.checkpoint, settings, out=path, progress=False)
            if not study.wants("evaluate"):
                continue
            for task in tasks:
                for schedule, extra in cfg.schedules.items():
                    for split, episodes in cfg.splits.items():
                        if not episodes:  # splits.test=0: a dev pass that only chooses
                            continue
                        results = suite.results_directory(out, split, task, schedule)
                        for cost, spec in selected_costs(cfg).items():
                            for seed in cfg.seeds:
                                run = suite.run_directory(out, group, candidate, seed)
                                checkpoint = checkpoint_with_cost(run, spec.learned_cost, cfg.checkpoint)
                                study.run(f"evaluate {task} {schedule} {split} {model_name(candidate, cost)} seed {seed}",
                                          evaluate, results / model_name(candidate, cost) / f"seed-{seed}",
                                          [f"checkpoint={checkpoint}", f"env={task}", *plan, f"split={split}",
                                           f"episodes={episodes}", *extra, *spec.plan])
    study.report(SECTION, lambda: report(study.report_cfg, out))


def summaries(cfg, out: Path) -> dict:
    """(split, task, schedule, candidate, cost) -> the suite's summary over the finished seeds."""
    found = {}
    for split in cfg.splits:
        for task in cfg.tasks:
            for schedule in cfg.schedules:
                for candidate in cfg.candidates:
                    for cost in cfg.costs:
                        summary = suite.summarize_task(suite.results_directory(out, split, task, schedule),
                                                       model_name(candidate, cost), cfg.seeds)
                        if summary:
                            found[(split, task, schedule, candidate, cost)] = summary
    return found


def dev_choice(found: dict, cfg) -> tuple[tuple[str, str] | None, dict]:
    """The (candidate, cost) with the best mean dev success over every task and schedule, once every selected
    pair (``only``, ``only_costs``) has them all, and each complete pair's mean."""
    means = {}
    candidates, costs = history.selected(cfg), selected_costs(cfg)
    for candidate in candidates:
        for cost in costs:
            rates = [found[key]["mean"] for task in cfg.tasks for schedule in cfg.schedules
                     if (key := ("dev", task, schedule, candidate, cost)) in found]
            if len(rates) == len(cfg.tasks) * len(cfg.schedules):
                means[(candidate, cost)] = statistics.mean(rates)
    complete = len(means) == len(candidates) * len(costs)
    return (max(means, key=means.get) if complete and means else None), means


def report(cfg, out: Path) -> str:
    found = summaries(cfg, out)
    chosen, dev_means = dev_choice(found, cfg)
    ranked = sorted(dev_means.items(), key=lambda item: -item[1])
    lines = [
        f"World models of the history study (up to {len(cfg.seeds)} training seeds each); learned costs trained on "
        f"each model's own training episodes over its frozen embeddings (`configs/learned_cost/`); every cost "
        f"plans the same {cfg.splits.dev} dev and {cfg.splits.test} test episodes, random and oracle beside them.",
        "",
        "Mean dev success over every task and schedule: " + (", ".join(
            f"{candidate} + {cost} {mean:.1%}" for (candidate, cost), mean in ranked) or "none yet")
        + (f"; **chosen on dev: {chosen[0]} + {chosen[1]}**." if chosen else " (the choice waits for every pair)."),
        "",
        "Test episodes: ours as mean +- std over training seeds [pooled 95% Wilson interval].",
        "",
        "| task | schedule | world model | cost | seeds | ours | random | oracle | ours / oracle | ms / MPC step |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for task in cfg.tasks:
        for schedule in cfg.schedules:
            for candidate in cfg.candidates:
                for cost in cfg.costs:
                    s = found.get(("test", task, schedule, candidate, cost))
                    if not s:
                        continue
                    ratio = s["mean"] / s["oracle"] if s["oracle"] > 0 else float("nan")
                    mark = " (chosen)" if chosen == (candidate, cost) else ""
                    lines.append(f"| {task} | {schedule} | {candidate} | {cost}{mark} | {s['seeds']} | {s['mean']:.0%} +- "
                                 f"{s['std']:.0%} [{s['pooled_ci95'][0]:.0%}, {s['pooled_ci95'][1]:.0%}] | {s['random']:.0%} "
                                 f"| {s['oracle']:.0%} | {ratio:.2f} | {s['ms_per_step']:.0f} |")
    if found:
        plot(found, cfg, FIGURE)
        lines += ["", f"Figure: [benchmarks/figures/{FIGURE.name}](benchmarks/figures/{FIGURE.name})."]
    return "\n".join(lines)


def plot(found: dict, cfg, path: Path) -> None:
    """Dev success per task and cost, one panel per history candidate (the default schedule)."""
    plt = pyplot()
    import numpy as np

    schedule = next(iter(cfg.schedules))
    candidates, costs, tasks = list(cfg.candidates), list(cfg.costs), list(cfg.tasks)
    figure, axes = plt.subplots(len(candidates), 1, figsize=(max(7, 1.5 * len(tasks)), 2.8 * len(candidates)),
                                squeeze=False)
    width = 0.8 / len(costs)
    for axis, candidate in zip(axes[:, 0], candidates):
        x = np.arange(len(tasks))
        for index, cost in enumerate(costs):
            rows = [found.get(("dev", task, schedule, candidate, cost)) for task in tasks]
            axis.bar(x + (index - (len(costs) - 1) / 2) * width, [r["mean"] if r else 0 for r in rows], width,
                     label=cost, color=f"C{index}")
        axis.set_xticks(x, tasks, fontsize=8)
        axis.set_ylim(0, 1.05)
        axis.set_ylabel("dev success")
        axis.set_title(f"{candidate} ({schedule})", fontsize=9)
    axes[0, 0].legend(fontsize=7, ncol=len(costs), loc="upper center", bbox_to_anchor=(0.5, 1.4))
    save_figure(figure, path)


if __name__ == "__main__":
    benchmark(main)
