"""Collection throughput: rendered frames per second with 1 and 2 workers, reacher-easy, 64x64 pixels.

Each repeat collects a fresh dataset with ``jepa_wm.data.collect.collect`` (OU policy; MuJoCo physics, EGL
rendering, compression and atomic shard writes) into a temporary directory; frames = env steps
rendered, including each episode's first frame. Worker start-up (spawned processes importing
dm_control) is part of the 2-worker time, as it is for a user. Repeats alternate 1 and 2 workers so
that drift in the machine's speed affects both alike; the ratio is of the two medians.

    python benchmarks/collect_throughput.py                       # print
    python benchmarks/collect_throughput.py repeats=5 --write     # and record in BENCHMARKS.md

Options: episodes=16 steps=50 repeats=3.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

from _report import machine_description, update_benchmarks_section
from jepa_wm.data.collect import collect

from jepa_wm.cli import benchmark
from jepa_wm.config import (
    command_line,
    load_group,
    to_dict,
)

POLICY = {"name": "ou", "theta": 0.15, "sigma": 0.3}
DEFAULTS = {"episodes": 16, "steps": 50, "repeats": 3}
WORKER_COUNTS = (1, 2)


def frames_per_second(workers: int, episodes: int, steps: int) -> float:
    """Frames per second of one complete collection into a fresh temporary directory."""
    env_cfg = to_dict(load_group("env", "reacher-easy"))  # 64x64 pixels, action_repeat 2
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        collect(env_cfg, directory, episodes=episodes, steps_per_episode=steps, policy=POLICY, seed=0,
                workers=workers, episodes_per_shard=max(1, episodes // 8), progress=False)
        return episodes * (steps + 1) / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    options, flags = command_line(argv, DEFAULTS)
    load_before = os.getloadavg()[0]  # other work on the machine shows up here, and in the 2-worker ratio
    episodes, steps, repeats = options["episodes"], options["steps"], options["repeats"]
    rates: dict[int, list[float]] = {workers: [] for workers in WORKER_COUNTS}
    for repeat in range(repeats):
        for workers in WORKER_COUNTS:
            rates[workers].append(frames_per_second(workers, episodes, steps))
            print(f"repeat {repeat + 1}/{repeats}, {workers} worker(s): {rates[workers][-1]:.0f} frames/s", flush=True)
    load_after = os.getloadavg()[0]
    median = {workers: statistics.median(values) for workers, values in rates.items()}
    rows = [f"| {workers} | {median[workers]:.0f} | {min(rates[workers]):.0f}-{max(rates[workers]):.0f} | "
            f"{median[workers] / median[1]:.2f}x |" for workers in WORKER_COUNTS]
    text = "\n".join([
        f"reacher-easy, 64x64 pixels + state, OU policy, {episodes} episodes x {steps} steps "
        f"({episodes * (steps + 1)} frames) per repeat, shards of {max(1, episodes // 8)} episodes; rendering, "
        f"physics, compression, atomic shard writes and worker start-up included; median of {repeats} repeats, "
        f"1 and 2 workers alternating. Load average (1 min) before / after: {load_before:.2f} / {load_after:.2f} "
        f"(the run adds up to 2 itself; more means other work shared the cores).",
        "",
        "| workers | frames / s (median) | range | vs 1 worker |",
        "| ---: | ---: | ---: | ---: |",
        *rows,
    ])
    print(text)
    if "--write" in flags:
        command = "python benchmarks/collect_throughput.py " + " ".join(argv)
        update_benchmarks_section("Collection throughput", text, command, machine_description())


if __name__ == "__main__":  # the guard matters: the 2-worker spawn pool re-imports this file
    benchmark(main)
