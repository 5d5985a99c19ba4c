"""Robust to what changes? Planning success of the shipped models when the scene varies, factor by factor.

Each task's shipped model (trained on the nominal scene) plans the first ``episodes`` test episodes of the suite
under every factor of ``env.variation`` (``data/envs/variation.py``: floor and body colours, light, camera turn,
distractor shapes, masses, friction, actuator gear) at each strength, the same episodes at strength 0 beside them.
Random and the oracle plan the same episodes: once for the nominal scene (a visual change is nothing to them: they
read no pixels) and again under each physical change (the oracle plans with the changed simulator).

Training-time remedies are measured on dev episodes: ``remedy.models``, each the suite's model (same size, steps and
seed as the shipped one) trained on the suite's data or on data collected under visual variation
(``remedy.collections``), with its own training overrides (e.g. ``model.augment``), each planned beside the shipped
model on the nominal scene and under each factor of ``remedy.scenes`` at strength 1.

    python benchmarks/robustness.py
    python benchmarks/robustness.py stages=[report] --write
"""

from __future__ import annotations

from pathlib import Path

from _report import pyplot, save_figure
from ablation import VALIDATION_METRICS, last_validation
from omegaconf import OmegaConf
from _study import Study, checkpoint_frameskip, evaluate, report_rows
from suite import task_groups

from jepa_wm.cli import benchmark
from jepa_wm.config import as_overrides, load_group, to_dict
from jepa_wm.data.envs.variation import FACTORS, PHYSICAL_FACTORS
from jepa_wm.errors import ConfigError
from jepa_wm.pipeline import collect_stage, train_stage

STAGES = ("evaluate", "remedy", "report")
NOMINAL = "nominal"  # a remedy model's data: the suite's own, collected in the nominal scene
FIGURE = Path(__file__).resolve().parent / "figures" / "robustness.png"
SECTION = "Robustness to scene variation (cpu)"


def cell(out: Path, task: str, factor: str, strength: float, who: str) -> Path:
    name = "nominal" if strength == 0 else f"{factor}-{strength:g}"
    return out / "robustness" / "results" / task / name / who


def variation(factor: str, strength: float) -> list[str]:
    return [] if strength == 0 else [f"env.variation.{factor}={strength}"]


def main(argv: list[str]) -> None:
    study = Study("robustness", argv, STAGES)
    cfg, out = study.cfg, study.out
    unknown = sorted(set(cfg.factors) - set(FACTORS))
    if unknown:
        raise ConfigError(f"factors={unknown}: not variation factors (choices: {', '.join(FACTORS)})")
    plan = [*as_overrides(cfg.plan), f"episodes={cfg.episodes}"]
    if study.wants("evaluate"):
        ours = {task: [f"checkpoint=pretrained:{task}", f"env={task}", *plan] for task in cfg.tasks}
        baselines = {task: [f"env={task}", "baselines=true", "methods=[random,oracle]",
                            f"mpc.frameskip={checkpoint_frameskip(f'pretrained:{task}')}", *plan]
                     for task in cfg.tasks}
        for task in cfg.tasks:
            study.run(f"robustness {task} nominal ours", evaluate, cell(out, task, "", 0, "ours"), ours[task])
            study.run(f"robustness {task} nominal baselines", evaluate, cell(out, task, "", 0, "baselines"),
                      baselines[task])
        # The strongest change first, every factor on every task, then the milder ones: a study stopped early
        # still covers every task and factor.
        for strength in sorted(cfg.strengths, reverse=True):
            for factor in cfg.factors:
                for task in cfg.tasks:
                    study.run(f"robustness {task} {factor} {strength:g} ours", evaluate,
                              cell(out, task, factor, strength, "ours"), [*ours[task], *variation(factor, strength)])
                    if factor in PHYSICAL_FACTORS:
                        study.run(f"robustness {task} {factor} {strength:g} baselines", evaluate,
                                  cell(out, task, factor, strength, "baselines"),
                                  [*baselines[task], *variation(factor, strength)])
    if study.wants("remedy"):
        remedy(study)
    study.report(SECTION, lambda: report(study.report_cfg, out))


def remedy_directory(out: Path) -> Path:
    return out / "robustness" / "remedy"


def remedy_scenes(spec) -> dict[str, list[str]]:
    """Scene name -> the plan overrides that make it: nominal, and each of ``spec.scenes`` at strength 1."""
    return {"nominal": [], **{factor: [f"env.variation.{factor}=1.0"] for factor in spec.scenes}}


def remedy(study: Study) -> None:
    """Each of ``remedy.collections`` collected (the remedy task's data under that variation), each of
    ``remedy.models`` trained on its data; they and the shipped model planned on dev episodes in every scene."""
    cfg, out = study.cfg, study.out
    task, spec = cfg.remedy.task, cfg.remedy
    named = {factor for strengths in spec.collections.values() for factor in strengths} | set(spec.scenes)
    unknown = sorted(named - set(FACTORS))
    if unknown:
        raise ConfigError(f"remedy: {unknown} are not variation factors (choices: {', '.join(FACTORS)})")
    for name, model in spec.models.items():
        if model.data != NOMINAL and model.data not in spec.collections:
            raise ConfigError(f"remedy.models.{name}.data={model.data}: choose {NOMINAL} or one of remedy.collections "
                              f"({', '.join(spec.collections)})")
    group = next(group for group, tasks in task_groups([task]).items())
    nominal = to_dict(load_group("env", group))
    home = remedy_directory(out)
    plan = [*as_overrides(cfg.plan), "split=dev", f"episodes={spec.episodes}", f"env={task}"]
    for scene, varied in remedy_scenes(spec).items():
        study.run(f"remedy {task} {scene} shipped", evaluate, home / "shipped" / "results" / scene,
                  [f"checkpoint=pretrained:{task}", *plan, *varied])
    datasets = {NOMINAL: out / group / "dataset"}  # the suite's own data, which the shipped model was trained on
    study.run(f"collect {group}", collect_stage, load_group("env", group), datasets[NOMINAL], as_overrides(cfg.collect),
              workers=cfg.workers, progress=False)
    for name, strengths in spec.collections.items():
        env_cfg = OmegaConf.create({**nominal, "variation": {**nominal["variation"], **to_dict(strengths)}})
        datasets[name] = home / name / "dataset"
        study.run(f"remedy {name} collect {group}", collect_stage, env_cfg, datasets[name],
                  as_overrides(cfg.collect), workers=cfg.workers, progress=False)
    for name, model in spec.models.items():
        checkpoint = study.run(f"remedy {name} train {group}", train_stage, datasets[model.data],
                               home / name / "model", [*as_overrides(cfg.train), *model.train], 0)
        for scene, varied in remedy_scenes(spec).items():
            study.run(f"remedy {name} {task} {scene}", evaluate, home / name / "results" / scene,
                      [f"checkpoint={checkpoint}", *plan, *varied])


def rate(path: Path, method: str) -> dict | None:
    return report_rows(path).get(method)


def report(cfg, out: Path) -> str:
    lines = [
        f"Shipped models (trained on the nominal scene, training seed 0) on the first {cfg.episodes} test episodes of "
        f"the suite (plan seed 0, never used for tuning), under each variation factor at each strength "
        f"(`env.variation.FACTOR=STRENGTH`; ranges in data/envs/variation.py). Each cell: success rate [95% Wilson "
        f"interval]. Random and the oracle plan the same episodes; they read no pixels, so their visual rows are the "
        f"nominal ones; under a physical change the oracle plans with the changed simulator. "
        f"Figure: [benchmarks/figures/robustness.png](benchmarks/figures/robustness.png).",
        "",
        "| task | factor | " + " | ".join(f"ours s={s:g}" for s in [0, *cfg.strengths])
        + f" | random s={max(cfg.strengths):g} | oracle s={max(cfg.strengths):g} |",
        "| --- | --- |" + " ---: |" * (len(cfg.strengths) + 3),
    ]
    curves = {}
    for task in cfg.tasks:
        nominal = rate(cell(out, task, "", 0, "ours"), "ours")
        if nominal is None:
            continue
        for factor in cfg.factors:
            rows = [nominal] + [rate(cell(out, task, factor, s, "ours"), "ours") for s in cfg.strengths]
            if all(row is None for row in rows[1:]):
                continue
            curves[(task, factor)] = [row["success_rate"] if row else float("nan") for row in rows]
            top = max(cfg.strengths)
            baselines = cell(out, task, factor, top, "baselines") if factor in PHYSICAL_FACTORS else \
                cell(out, task, "", 0, "baselines")
            random, oracle = rate(baselines, "random"), rate(baselines, "oracle")
            cells = [f"{row['success_rate']:.0%} [{row['ci95'][0]:.0%}, {row['ci95'][1]:.0%}]" if row else "-"
                     for row in rows]
            lines.append(f"| {task} | {factor} | " + " | ".join(cells)
                         + f" | {random['success_rate']:.0%} | {oracle['success_rate']:.0%} |" if random and oracle
                         else f"| {task} | {factor} | " + " | ".join(cells) + " | - | - |")
    remedy_text = remedy_report(cfg, out)
    if curves:
        plot(curves, [0, *cfg.strengths], cfg.tasks, FIGURE)
    return "\n".join(lines) + ("\n\n" + remedy_text if remedy_text else "")


def remedy_report(cfg, out: Path) -> str | None:
    spec, home = cfg.remedy, remedy_directory(out)
    models = {"shipped": home / "shipped" / "results", **{name: home / name / "results" for name in spec.models}}
    rows = []
    for scene in remedy_scenes(spec):
        found = [rate(results / scene, "ours") for results in models.values()]
        if found[0] and any(found[1:]):
            rows.append(f"| {scene} | " + " | ".join(
                f"{row['success_rate']:.0%} [{row['ci95'][0]:.0%}, {row['ci95'][1]:.0%}]" if row else "-"
                for row in found) + " |")
    if not rows:
        return None
    collected = "; ".join(f"{name}: " + ", ".join(f"{factor} {strength:g}" for factor, strength in strengths.items())
                          for name, strengths in spec.collections.items())
    trained = "; ".join(f"{name}: {model.data} data" + (f", {' '.join(model.train)}" if model.train else "")
                        for name, model in spec.models.items())
    return "\n".join([
        f"Remedies (dev episodes, {spec.episodes} per cell): {spec.task}'s data collected under variation ({collected}; "
        f"{cfg.collect.episodes} episodes x {cfg.collect.steps_per_episode} steps, as the suite's), and the suite's "
        f"model ({cfg.train.trainer.max_steps} steps, seed 0) trained as each remedy says ({trained}; model.augment: "
        f"each frame of a training window recoloured, shifted and cluttered by its own draw, jepa_wm/augment.py), "
        f"beside the shipped model (the suite's model on nominal data). Each row plans the nominal scene or one factor "
        f"at strength 1.",
        "", "| scene | shipped model | " + " | ".join(f"{name}" for name in spec.models) + " |",
        "| --- | ---: |" + " ---: |" * len(spec.models), *rows, *remedy_validation(spec, home)])


def remedy_validation(spec, home: Path) -> list[str]:
    """What each remedy model's last validation says it learned (the ablation's metrics): an encoder that keeps the
    scene and loses the body predicts no better than copying the last embedding and decodes the goal coordinates
    badly."""
    found = {name: last_validation(home / name / "model") for name in spec.models}
    parts = [f"{name}: rollout ratio {v['rollout_ratio']:.2f}, probe R^2 {v['probe_r2']:.2f}, rank corr. "
             f"{v['distance_correlation']:.2f}" for name, v in found.items() if len(v) == len(VALIDATION_METRICS)]
    if not parts:
        return []
    return ["", "Validation of the remedy models (last validation on their own data; the ablation's metrics: rollout "
            "error over copying the last embedding, < 1 beats 'nothing moves'; probe R^2 of the goal coordinates; "
            "latent/true distance rank correlation): " + "; ".join(parts) + "."]


def plot(curves: dict, strengths: list[float], tasks, path: Path) -> None:
    plt = pyplot()
    tasks = [task for task in tasks if any(key[0] == task for key in curves)]
    figure, axes = plt.subplots(1, len(tasks), figsize=(3.6 * len(tasks), 3.4), squeeze=False)
    for axis, task in zip(axes[0], tasks):
        for (_, factor), values in ((key, v) for key, v in curves.items() if key[0] == task):
            style = "--" if factor in PHYSICAL_FACTORS else "-"
            axis.plot(strengths, values, style, marker="o", label=factor, color=f"C{FACTORS.index(factor)}")
        axis.set_title(task, fontsize=9)
        axis.set_xlabel("variation strength")
        axis.set_ylim(0, 1.05)
    axes[0][0].set_ylabel("success rate (test episodes)")
    axes[0][-1].legend(fontsize=7)
    save_figure(figure, path)


if __name__ == "__main__":
    benchmark(main)
