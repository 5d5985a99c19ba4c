"""How much history does the predictor need? One frame cannot show velocity; plans executed open loop need it.

Candidates (``configs/history.yaml``): the frame-stack MLP predictor on 1, 2 or 3 frames and the causal
transformer on 3, each trained with a rollout loss as long as the planning horizon (the previous default,
1 frame and 4 rollout steps, is the suite's ablation row). Every candidate is trained on the suite's data with the suite's budget
(K training seeds) and planned on every task with two schedules: replanning after every block (the
default MPC) and the published open-loop schedule (CEM 300 x 30, all 5 blocks executed). Dev episodes
choose; test episodes report. Beside success: planning ms per MPC step and the validation open-loop
prediction error per model step (1..5), relative to copying the last embedding.

    python benchmarks/history.py                                   # everything; finished stages are reused
    python benchmarks/history.py "tasks=[finger-spin]" "seeds=[0]" "stages=[train,evaluate]"
    python benchmarks/history.py stages=[report] --write
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import suite
from _report import pyplot, save_figure
from _study import Study, evaluate, only_these

from jepa_wm.cli import benchmark
from jepa_wm.config import as_overrides, load_group
from jepa_wm.pipeline import collect_stage, train_stage

FIGURE = Path(__file__).resolve().parent / "figures" / "history.png"
SECTION = "Predictor history: seeing velocity (cpu)"


def rollout_error_ratios(run: Path) -> list[float]:
    """Validation open-loop error per model step over the copy-last error, from the last validation."""
    path = run / "csv" / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as file:
        rows = [row for row in csv.DictReader(file) if row.get("val/copy_last_error")]
    if not rows:
        return []
    last, ratios, step = rows[-1], [], 1
    copy_last = float(last["val/copy_last_error"])
    while last.get(f"val/rollout_error_step{step}"):
        ratios.append(float(last[f"val/rollout_error_step{step}"]) / copy_last)
        step += 1
    return ratios


def selected(cfg) -> dict:
    """The candidates this run works on: ``only`` of them, or all."""
    return only_these(cfg.candidates, cfg.only, "only", "candidates")


def main(argv: list[str]) -> None:
    study = Study("history", argv, suite.STAGES)
    cfg, out = study.cfg, study.out
    train, plan = as_overrides(cfg.train), as_overrides(cfg.plan)
    for group, tasks in suite.task_groups(list(cfg.tasks)).items():
        dataset = out / group / "dataset"
        if study.wants("collect"):
            study.run(f"collect {group}", collect_stage, load_group("env", group), dataset, as_overrides(cfg.collect),
                      workers=cfg.workers, progress=False)
        frameskip = suite.task_frameskip(dataset, train)
        for model, model_overrides in selected(cfg).items():
            if study.wants("train"):
                for seed in cfg.seeds:
                    study.run(f"train {group} {model} seed {seed}", train_stage, dataset,
                              suite.run_directory(out, group, model, seed), [*train, *model_overrides], seed)
            for task in tasks:
                for schedule, extra in cfg.schedules.items():
                    for split, episodes in cfg.splits.items():
                        results = suite.results_directory(out, split, task, schedule)
                        settings = [*plan, f"split={split}", f"episodes={episodes}", *extra]
                        if study.wants("baselines"):
                            study.run(f"baselines {task} {schedule} {split}", evaluate, results / "baselines",
                                      [f"env={task}", "baselines=true", "methods=[random,oracle]",
                                       f"mpc.frameskip={frameskip}", *settings])
                        if not study.wants("evaluate"):
                            continue
                        for seed in cfg.seeds:
                            checkpoint = suite.run_directory(out, group, model, seed) / "checkpoints" / cfg.checkpoint
                            study.run(f"evaluate {task} {schedule} {split} {model} seed {seed}", evaluate,
                                      results / model / f"seed-{seed}", [f"checkpoint={checkpoint}", f"env={task}", *settings])
    study.report(SECTION, lambda: report(study.report_cfg, out))


def summaries(cfg, out: Path) -> dict:
    """(split, task, schedule, candidate) -> the suite's summary of the finished seeds."""
    found = {}
    for split in cfg.splits:
        for task in cfg.tasks:
            for schedule in cfg.schedules:
                for model in cfg.candidates:
                    summary = suite.summarize_task(suite.results_directory(out, split, task, schedule), model, cfg.seeds)
                    if summary:
                        found[(split, task, schedule, model)] = summary
    return found


def dev_choice(found: dict, candidates, tasks, schedules) -> tuple[str | None, dict]:
    """The candidate with the best mean dev success over every task and schedule it finished (None before
    every candidate has a dev result for every task and schedule), and each candidate's mean."""
    means = {}
    for model in candidates:
        rates = [found[("dev", task, schedule, model)]["mean"] for task in tasks for schedule in schedules
                 if ("dev", task, schedule, model) in found]
        if len(rates) == len(tasks) * len(schedules):
            means[model] = statistics.mean(rates)
    complete = len(means) == len(candidates)
    return (max(means, key=lambda model: (means[model], -list(candidates).index(model))) if complete else None), means


def report(cfg, out: Path) -> str:
    found = summaries(cfg, out)
    groups = {task: group for group, tasks in suite.task_groups(list(cfg.tasks)).items() for task in tasks}
    chosen, dev_means = dev_choice(found, list(selected(cfg)), list(cfg.tasks), list(cfg.schedules))
    lines = [
        f"Candidates trained on the suite's data ({cfg.collect.episodes} episodes x {cfg.collect.steps_per_episode} "
        f"steps per dynamics group, {cfg.train.trainer.max_steps} training steps), up to {len(cfg.seeds)} training "
        f"seeds; planned with checkpoints/{cfg.checkpoint} on {cfg.splits.dev} dev episodes (the choice) and "
        f"{cfg.splits.test} test episodes (the report, plan seed {cfg.plan.seed}), random and oracle on the same "
        f"episodes. Schedules: " + "; ".join(f"`{name}` ({' '.join(extra) or 'the default MPC'})"
                                             for name, extra in cfg.schedules.items()) + ".",
        "",
        "Mean dev success over every task and schedule: " + (", ".join(
            f"{model} {mean:.1%}" for model, mean in sorted(dev_means.items(), key=lambda item: -item[1])) or "none yet")
        + (f"; **chosen on dev with the latent distance: {chosen}**; the default is chosen together with the "
           f"planning cost (benchmarks/costs.py)." if chosen else " (the choice waits for every candidate's dev results)."),
        "",
        "Test episodes, ours as mean +- std over training seeds [pooled 95% Wilson interval]; "
        "rollout error per model step 1..5 relative to copying the last embedding (validation, mean over seeds).",
        "",
        "| task | schedule | candidate | seeds | ours | random | oracle | ours / oracle | ms / MPC step | rollout error / copy-last, steps 1..5 |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for task in cfg.tasks:
        for schedule in cfg.schedules:
            for model in cfg.candidates:
                s = found.get(("test", task, schedule, model))
                if not s:
                    continue
                ratios = [rollout_error_ratios(suite.run_directory(out, groups[task], model, seed))
                          for seed in s["finished_seeds"]]
                steps = [statistics.mean(values) for values in zip(*ratios)] if ratios and all(ratios) else []
                ratio = s["mean"] / s["oracle"] if s["oracle"] > 0 else float("nan")
                lines.append(
                    f"| {task} | {schedule} | {model}{' (chosen)' if model == chosen else ''} | {s['seeds']} | "
                    f"{s['mean']:.0%} +- {s['std']:.0%} [{s['pooled_ci95'][0]:.0%}, {s['pooled_ci95'][1]:.0%}] | "
                    f"{s['random']:.0%} | {s['oracle']:.0%} | {ratio:.2f} | {s['ms_per_step']:.0f} | "
                    f"{' / '.join(f'{value:.2f}' for value in steps)} |")
    if found:
        plot(found, cfg, FIGURE)
        lines += ["", f"Figure: [benchmarks/figures/{FIGURE.name}](benchmarks/figures/{FIGURE.name})."]
    return "\n".join(lines)


def plot(found: dict, cfg, path: Path) -> None:
    """Test success per task and candidate, one panel per schedule."""
    plt = pyplot()
    import numpy as np

    schedules, models, tasks = list(cfg.schedules), list(cfg.candidates), list(cfg.tasks)
    figure, axes = plt.subplots(len(schedules), 1, figsize=(max(7, 1.5 * len(tasks)), 3.2 * len(schedules)), squeeze=False)
    width = 0.8 / len(models)
    for axis, schedule in zip(axes[:, 0], schedules):
        x = np.arange(len(tasks))
        for index, model in enumerate(models):
            rows = [found.get(("test", task, schedule, model)) for task in tasks]
            axis.bar(x + (index - (len(models) - 1) / 2) * width, [r["mean"] if r else 0 for r in rows], width,
                     yerr=[r["std"] if r else 0 for r in rows], capsize=2, label=model, color=f"C{index}")
        oracle = [next((found[k]["oracle"] for k in found if k[:3] == ("test", task, schedule)), np.nan) for task in tasks]
        axis.scatter(x, oracle, marker="_", s=400, color="k", label="oracle", zorder=3)
        axis.set_xticks(x, tasks, fontsize=8)
        axis.set_ylim(0, 1.05)
        axis.set_ylabel("test success")
        axis.set_title(schedule, fontsize=9)
    axes[0, 0].legend(fontsize=7, ncol=len(models) + 1, loc="upper center", bbox_to_anchor=(0.5, 1.35))
    save_figure(figure, path)


if __name__ == "__main__":
    benchmark(main)
