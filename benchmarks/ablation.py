"""Does abstract prediction help a machine act? JEPA against reconstruction and the anti-collapse terms.

The variants of ``configs/ablation.yaml`` (the default JEPA, LeWM-style SIGReg, an EMA target, a JEPA
shaped by pixel reconstruction, a reconstruction world model, and no anti-collapse term at all) are
trained on the same data with the same budget and planned with the same planner, through the suite's
stages (``benchmarks/suite.py``: resumable, reused when finished, test-split episodes). Per variant and
task: planning success (mean +- std over training seeds), final distance, the validation rollout error
relative to copying the last embedding, the probe R^2 of the goal coordinates, the latent/true distance
rank correlation, and training time.

    python benchmarks/ablation.py                      # everything; finished stages are reused
    python benchmarks/ablation.py stages=[report] --write
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import suite
from _report import pyplot, save_figure

from jepa_wm.cli import benchmark

FIGURE = Path(__file__).resolve().parent / "figures" / "ablation.png"
VALIDATION_METRICS = {"rollout_ratio": "val/rollout_error_ratio", "probe_r2": "val/probe_r2",
                      "distance_correlation": "val/distance_rank_correlation"}


def last_validation(run: Path) -> dict:
    """The last validation row's metrics of a training run (empty if it has none)."""
    path = run / "csv" / "metrics.csv"
    if not path.is_file():
        return {}
    with open(path, newline="") as file:
        rows = [row for row in csv.DictReader(file) if row.get("val/rollout_error_ratio")]
    return {name: float(rows[-1][key]) for name, key in VALIDATION_METRICS.items() if rows and rows[-1].get(key)}


def mean(values) -> float:
    values = [value for value in values if value is not None]
    return statistics.mean(values) if values else float("nan")


def report(cfg, out: Path, timings: suite.Timings, figure: Path | None = None) -> str:
    """The variants' table (and figure: ``figure``, or the ablation's) from the reports and runs on disk."""
    figure = figure or FIGURE
    groups = {task: group for group, tasks in suite.task_groups(list(cfg.tasks)).items() for task in tasks}
    rows = {}
    for task in cfg.tasks:
        for model in cfg.models:
            summary = suite.summarize_task(suite.results_directory(out, cfg.plan.split, task, suite.DEFAULT_VARIANT),
                                           model, cfg.seeds)
            if not summary:
                continue
            finished = summary["finished_seeds"]  # a run still training has a partial metrics.csv
            validation = [last_validation(suite.run_directory(out, groups[task], model, seed)) for seed in finished]
            seconds = [timings.seconds.get(f"train {groups[task]} {model} seed {seed}") for seed in finished]
            rows[(task, model)] = {**summary, **{name: mean(v.get(name) for v in validation) for name in VALIDATION_METRICS},
                                   "train_minutes": mean(seconds) / 60}
    if rows:
        plot_ablation(rows, list(cfg.models), figure, cfg.plan.split)
    lines = [
        f"Up to {len(cfg.seeds)} training seeds per variant and task (the seeds column: how many finished), {cfg.train.trainer.max_steps} steps on the same data "
        f"({cfg.collect.episodes} episodes x {cfg.collect.steps_per_episode} steps), the same CEM MPC, "
        f"{cfg.plan.episodes} {cfg.plan.split}-split episodes. Rollout ratio: validation open-loop error / copying the last "
        f"embedding (< 1 beats 'nothing moves'); probe: R^2 of the goal coordinates from embeddings; rank corr.: "
        f"latent vs true distance over pairs of validation frames; train min: wall minutes per model as it "
        f"ran (they depend on what else the machine ran at the time). Figure: "
        f"[benchmarks/figures/{figure.name}](benchmarks/figures/{figure.name}).",
        "",
        "| task | variant | seeds | success (mean +- std) | pooled 95% CI | final distance | rollout ratio | probe R2 | rank corr. | train min |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for (task, model), row in rows.items():
        spread = f" +- {row['std']:.0%}" if row["seeds"] > 1 else ""  # one seed has no spread to show
        lines.append(f"| {task} | {model} | {row['seeds']} | {row['mean']:.0%}{spread} | [{row['pooled_ci95'][0]:.0%}, "
                     f"{row['pooled_ci95'][1]:.0%}] | {row['final_distance']:.3f} | {row['rollout_ratio']:.3f} | "
                     f"{row['probe_r2']:.2f} | {row['distance_correlation']:.2f} | {row['train_minutes']:.1f} |")
    tasks = sorted({task for task, _ in rows})
    baselines = {task: next(row for (t, _), row in rows.items() if t == task) for task in tasks}
    lines += ["", "Random / oracle on the same episodes: " + "; ".join(
        f"{task} {baselines[task]['random']:.0%} / {baselines[task]['oracle']:.0%}" for task in tasks) + "."]
    return "\n".join(lines)


def plot_ablation(rows: dict, models: list[str], path: Path, split: str = "test") -> None:
    """Success per task and variant (mean +- std over seeds)."""
    plt = pyplot()
    import numpy as np

    tasks = sorted({task for task, _ in rows})
    width = 0.8 / len(models)
    figure, axis = plt.subplots(figsize=(2.6 * len(tasks) + 2, 4))
    for index, model in enumerate(models):
        means = [rows.get((task, model), {}).get("mean", np.nan) for task in tasks]
        stds = [rows.get((task, model), {}).get("std", 0.0) for task in tasks]
        axis.bar(np.arange(len(tasks)) + (index - (len(models) - 1) / 2) * width, means, width, yerr=stds,
                 capsize=3, label=model)
    axis.set_xticks(np.arange(len(tasks)), tasks)
    axis.set_ylim(0, 1.05)
    axis.set_ylabel(f"success rate ({split} episodes)")
    axis.legend(fontsize=7, ncol=2)
    save_figure(figure, path)


if __name__ == "__main__":
    benchmark(lambda argv: suite.main(argv, config="ablation", section="Ablation: JEPA, reconstruction and anti-collapse (cpu)",
                                      reporter=report))
