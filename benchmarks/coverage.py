"""How much of a task's success coordinates each collection policy covers (``configs/coverage.yaml``).

Per task and policy a small dataset is collected; per success coordinate the report gives the share of episodes
that leave it where it started, its median range within an episode and the share of env steps that move it. A
body that only contact moves (finger-spin's spinner) is where a collection policy can starve a world model and a
probe of it of examples. Nothing plans here: a policy chosen by these numbers was chosen on no evaluation episode.

    python benchmarks/coverage.py
    python benchmarks/coverage.py "tasks=[finger-spin,hopper-stand]" episodes=50
    python benchmarks/coverage.py stages=[report] --write
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from _study import Study

from jepa_wm.cli import benchmark
from jepa_wm.config import as_overrides, load_group, to_dict
from jepa_wm.data.dataset import load_episodes
from jepa_wm.data.storage import MANIFEST_NAME, load_manifest
from jepa_wm.pipeline import collect_stage, success_coordinates

SECTION = "Collection coverage: how much of the success coordinates a collection policy moves (cpu)"
STAGES = ("collect", "report")


def dataset_directory(out: Path, task: str, policy: str) -> Path:
    return out / task / policy


def main(argv: list[str]) -> None:
    study = Study("coverage", argv, STAGES)
    cfg = study.cfg
    if study.wants("collect"):
        for task in cfg.tasks:
            for name, settings in cfg.policies.items():
                study.run(f"collect {task} {name}", collect_stage, load_group("env", task),
                          dataset_directory(study.out, task, name),
                          [f"episodes={cfg.episodes}", f"steps_per_episode={cfg.steps_per_episode}",
                           *as_overrides({"policy": to_dict(settings)})], seed=cfg.seed, workers=cfg.workers, progress=False)
    study.report(SECTION, lambda: report(study.report_cfg, study.out))


def coverage(path: Path, still: float, moving: float) -> dict[str, dict[str, float]]:
    """Per success coordinate of the dataset at ``path``: ``still`` (share of episodes in which its range stays
    below ``still``), ``range`` (median range within an episode) and ``moving`` (share of steps changing it by
    more than ``moving``)."""
    store = load_episodes(path, next(iter(load_manifest(path)["observations"])))
    _, names = success_coordinates(store)
    positions = [np.asarray(store.episode(index)["position"], dtype=np.float64) for index in range(store.num_episodes)]
    ranges = np.stack([np.ptp(episode, axis=0) for episode in positions])  # (E, C)
    steps = np.concatenate([np.abs(np.diff(episode, axis=0)) for episode in positions])  # (E * T, C)
    return {name: {"still": float(np.mean(ranges[:, index] < still)), "range": float(np.median(ranges[:, index])),
                   "moving": float(np.mean(steps[:, index] > moving))} for index, name in enumerate(names)}


def report(cfg, out: Path) -> str | None:
    rows = []  # (task, policy described, {coordinate: its coverage})
    for task in cfg.tasks:
        for name, settings in cfg.policies.items():
            path = dataset_directory(out, task, name)
            if (path / MANIFEST_NAME).is_file():
                described = ", ".join(f"{key} {value}" for key, value in to_dict(settings).items() if key != "name")
                rows.append((task, f"{name} ({settings.name}{': ' + described if described else ''})",
                             coverage(path, cfg.still, cfg.moving)))
    if not rows:
        return None
    lines = [
        f"{cfg.episodes} episodes x {cfg.steps_per_episode} steps per task and policy (collection seed {cfg.seed}). "
        f"Per success coordinate: the share of episodes that leave it where it started (range < {cfg.still}) / its "
        f"median range within an episode (rad or m) / the share of env steps that move it by > {cfg.moving}.",
    ]
    for task in dict.fromkeys(row[0] for row in rows):
        names = list(next(found for row_task, _, found in rows if row_task == task))
        lines += ["", f"**{task}**", "", "| policy | " + " | ".join(names) + " |",
                  "| --- | " + " | ".join("---:" for _ in names) + " |"]
        lines += [f"| {policy} | " + " | ".join(f"{c['still']:.0%} / {c['range']:.2f} / {c['moving']:.0%}"
                                               for c in found.values()) + " |"
                  for row_task, policy, found in rows if row_task == task]
    return "\n".join(lines)


if __name__ == "__main__":
    benchmark(main)
