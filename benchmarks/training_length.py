"""Does training longer hurt planning? Success against training steps, and what predicts it.

For each task and training seed, one run of the default model to the longest length, keeping
checkpoints at every length of ``steps``; each is planned with on *dev* episodes (this study chooses
a training length and a checkpoint-selection metric, so those choices never look at test episodes).
The final checkpoint, and the one each run's dev success selects, are also planned on the suite's
test episodes, beside the suite's default model (trained for fewer steps), to report whether longer
training hurts, and whether that selection helps, where the suite reports. Beside the
success rate: the validation rollout error relative to copying the last embedding, the probe R^2 and
the latent/true distance rank correlation at the same step, and how well each of them ranks the
checkpoints by success (Spearman over all checkpoints of a task).

    python benchmarks/training_length.py                          # resumable; finished parts are reused
    python benchmarks/training_length.py stages=[report] --write
"""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import suite
import torch
from _report import pyplot, save_figure
from _study import Study, evaluate, report_rows

from jepa_wm.cli import benchmark
from jepa_wm.config import as_overrides, compose, load_group
from jepa_wm.metrics import rank_correlation
from jepa_wm.pipeline import collect_stage, train_stage

FIGURE = Path(__file__).resolve().parent / "figures" / "training_length.png"
METRICS = {"rollout ratio": "val/rollout_error_ratio", "probe R2": "val/probe_r2",
           "distance rank corr.": "val/distance_rank_correlation"}


def validation_at(run: Path, step: int) -> dict:
    """Validation metrics logged for the checkpoint at ``step`` (rows carry step - 1)."""
    with open(run / "csv" / "metrics.csv", newline="") as file:
        rows = [row for row in csv.DictReader(file) if row.get("val/loss") and int(row["step"]) == step - 1]
    return {name: float(rows[-1][key]) for name, key in METRICS.items() if rows and rows[-1].get(key)}


def best_dev_step(points, task: str, seed: int) -> int | None:
    """The step whose checkpoint planned best on dev episodes (the earliest of ties), None before any did."""
    here = [(success, -step) for t, s, step, success, _ in points if (t, s) == (task, seed)]
    return -max(here)[1] if here else None


def test_models(points, task: str, seed: int, last_step: int) -> dict[str, int]:
    """The checkpoints planned on test episodes: the final one, and the one dev success selects."""
    models = {f"default-{last_step}-steps": last_step}
    chosen = best_dev_step(points, task, seed)
    if chosen is not None:
        models[f"default-{last_step}-steps-best-dev"] = chosen
    return models


def test_results(out: Path, task: str, name: str) -> Path:
    """Where a checkpoint's test-episode reports go: beside the suite's models of the task."""
    return out / "results" / task / suite.DEFAULT_VARIANT / name


def main(argv: list[str]) -> None:
    study = Study("training_length", argv, suite.STAGES[:2] + ("evaluate", "report"), "training_length_timings.json")
    cfg, out = study.cfg, study.out
    steps = sorted(int(step) for step in cfg.steps)
    train = [*as_overrides(cfg.train), f"trainer.max_steps={steps[-1]}", f"checkpoints_at=[{','.join(map(str, steps))}]"]
    points = []  # (task, seed, step, success, metrics)
    for group, tasks in suite.task_groups(list(cfg.tasks)).items():
        dataset = out / group / "dataset"
        if study.wants("collect"):
            study.run(f"collect {group}", collect_stage, load_group("env", group), dataset, as_overrides(cfg.collect),
                      workers=cfg.workers, progress=False)
        for seed in cfg.seeds:
            run = out / group / "training-length" / f"seed-{seed}"
            if study.wants("train"):
                study.run(f"train {group} seed {seed}", train_stage, dataset, run, train, seed)
            for task in tasks:
                for step in steps:
                    checkpoint = run / "checkpoints" / f"step-{step}.ckpt"
                    results = out / "results-dev" / task / "training-length" / f"seed-{seed}" / f"step-{step}"
                    if study.wants("evaluate"):
                        study.run(f"evaluate {task} seed {seed} step {step}", evaluate, results,
                                  [f"checkpoint={checkpoint}", f"env={task}", *as_overrides(cfg.plan)])
                    rows = report_rows(results)
                    if rows:
                        points.append((task, seed, step, rows["ours"]["success_rate"], validation_at(run, step)))
                if study.wants("evaluate"):
                    for name, step in test_models(points, task, seed, steps[-1]).items():
                        study.run(f"evaluate {task} seed {seed} {name} test", evaluate,
                                  test_results(out, task, name) / f"seed-{seed}",
                                  [f"checkpoint={run / 'checkpoints' / f'step-{step}.ckpt'}", f"env={task}",
                                   *as_overrides(cfg.plan), *as_overrides(cfg.test_plan)])
    study.report("Training length and what predicts planning (cpu)",
                 lambda: report(points, cfg) + "\n\n" + test_comparison(cfg, out, points, steps[-1]) if points else None)


def report(points, cfg) -> str:
    tasks = sorted({task for task, *_ in points})
    steps = sorted({step for _, _, step, *_ in points})
    plot_training_length(points, tasks, steps)
    lines = [
        f"Default model, {len(cfg.seeds)} training seeds, one run each to {steps[-1]} steps with checkpoints at "
        f"{', '.join(map(str, steps))}; success on {cfg.plan.episodes} dev-split episodes (this study chooses "
        f"settings on them; test episodes appear only in the last table). Metrics at the same step, on validation "
        f"windows. Each task's stages ran as `python benchmarks/training_length.py tasks=[TASK] "
        f"stages=[collect,train,evaluate]`. Figure: "
        f"[benchmarks/figures/training_length.png](benchmarks/figures/training_length.png).",
        "",
        "| task | steps | success (mean +- std) | " + " | ".join(METRICS) + " |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in METRICS) + " |",
    ]
    for task in tasks:
        for step in steps:
            here = [(success, metrics) for t, _, s, success, metrics in points if t == task and s == step]
            rates = [success for success, _ in here]
            cells = [f"{statistics.mean(m[name] for _, m in here if name in m):.3f}" if any(name in m for _, m in here)
                     else "-" for name in METRICS]
            lines.append(f"| {task} | {step} | {statistics.mean(rates):.0%} +- "
                         f"{statistics.stdev(rates) if len(rates) > 1 else 0:.0%} | " + " | ".join(cells) + " |")
    lines += ["", "How well each validation metric ranks checkpoints by dev success (Spearman over every checkpoint "
                  "of a task; sign flipped for the rollout ratio, where lower is better):", ""]
    for task in tasks:
        here = [(success, metrics) for t, _, _, success, metrics in points if t == task]
        parts = []
        for name in METRICS:
            pairs = [(success, metrics[name]) for success, metrics in here if name in metrics]
            if len(pairs) > 2:
                success, metric = torch.tensor(pairs, dtype=torch.float64).T
                sign = -1 if name == "rollout ratio" else 1
                parts.append(f"{name} {sign * float(rank_correlation(metric, success)):+.2f}")
        lines.append(f"- {task}: " + "; ".join(parts))
    return "\n".join(lines)


def test_comparison(cfg, out: Path, points, step: int) -> str:
    """The final and the dev-selected checkpoints against the suite's default model, on test episodes."""
    trained = compose("suite", []).train.trainer.max_steps
    lines = [f"The same runs on the suite's {cfg.test_plan.episodes} test episodes: the {step}-step checkpoint, and "
             f"the checkpoint each seed's dev success selects (steps chosen, per seed), beside the suite's default "
             f"model (trained {trained} steps with its own schedule; same seeds and episodes):",
             "", f"| task | {trained} steps (suite) | {step} steps | best on dev | steps chosen | oracle |",
             "| --- | ---: | ---: | ---: | --- | ---: |"]
    for task in cfg.tasks:
        results = out / "results" / task / suite.DEFAULT_VARIANT
        short, final, selected = (suite.summarize_task(results, model, cfg.seeds) for model in
                                  ("default", f"default-{step}-steps", f"default-{step}-steps-best-dev"))
        if not (short and final):
            continue
        cells = [f"{s['mean']:.0%} +- {s['std']:.0%} ({s['seeds']} seeds)" if s else "-" for s in (short, final, selected)]
        chosen = ", ".join(str(best_dev_step(points, task, seed)) for seed in cfg.seeds)
        lines.append(f"| {task} | {' | '.join(cells)} | {chosen} | {final['oracle']:.0%} |")
    return "\n".join(lines)


def plot_training_length(points, tasks, steps) -> None:
    plt = pyplot()

    figure, axes = plt.subplots(1, 1 + len(METRICS), figsize=(4.2 * (1 + len(METRICS)), 3.6))
    for task in tasks:
        def series(value):
            means, stds = [], []
            for step in steps:
                values = [value(success, metrics) for t, _, s, success, metrics in points if t == task and s == step]
                values = [v for v in values if v is not None]
                means.append(statistics.mean(values) if values else float("nan"))
                stds.append(statistics.stdev(values) if len(values) > 1 else 0.0)
            return means, stds

        for axis, (label, value) in zip(axes, [("dev success", lambda s, m: s),
                                               *[(name, lambda s, m, n=name: m.get(n)) for name in METRICS]]):
            means, stds = series(value)
            axis.errorbar(steps, means, yerr=stds, marker="o", capsize=3, label=task)
            axis.set_title(label)
            axis.set_xlabel("training steps")
    axes[0].set_ylim(0, 1.05)
    axes[0].legend(fontsize=8)
    save_figure(figure, FIGURE)


if __name__ == "__main__":
    benchmark(main)
