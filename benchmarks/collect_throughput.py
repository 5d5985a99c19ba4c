"""Collection throughput: rendered frames per second with 1 and 2 workers, reacher-easy, 64x64 pixels.

Each repeat collects a fresh dataset (OU policy, episodes rendered by MuJoCo and written as shards)
into a temporary directory; frames = env steps rendered, including each episode's first frame.
Reports the median over repeats and the 2-worker / 1-worker ratio measured in the same process.

    python benchmarks/collect_throughput.py            # print
    python benchmarks/collect_throughput.py --write    # and record in BENCHMARKS.md
"""

from __future__ import annotations

import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import machine_description, update_benchmarks_section  # noqa: E402

from data.collect import collect  # noqa: E402
from jepa_wm.config import load_group, to_dict  # noqa: E402

POLICY = {"name": "ou", "theta": 0.15, "sigma": 0.3}


def frames_per_second(workers: int, episodes: int, steps: int) -> float:
    env_cfg = to_dict(load_group("env", "reacher-easy"))
    with tempfile.TemporaryDirectory() as directory:
        start = time.perf_counter()
        collect(env_cfg, directory, episodes=episodes, steps_per_episode=steps, policy=POLICY, seed=0,
                workers=workers, episodes_per_shard=max(1, episodes // 8), progress=False)
        return episodes * (steps + 1) / (time.perf_counter() - start)


def main(argv: list[str]) -> None:
    options = dict(arg.split("=", 1) for arg in argv if "=" in arg)
    episodes, steps = int(options.get("episodes", 16)), int(options.get("steps", 50))
    repeats = int(options.get("repeats", 3))
    results = {}
    for workers in (1, 2):
        rates = [frames_per_second(workers, episodes, steps) for _ in range(repeats)]
        results[workers] = statistics.median(rates)
        print(f"{workers} worker(s): median {results[workers]:.0f} frames/s over {repeats} repeats {[round(r) for r in rates]}")
    text = "\n".join([
        f"reacher-easy, 64x64 pixels + state, OU policy, {episodes} episodes x {steps} steps per repeat "
        f"(rendering, physics, compression and atomic shard writes included); median of {repeats} repeats.",
        "",
        "| workers | frames / s | vs 1 worker |",
        "| ---: | ---: | ---: |",
        f"| 1 | {results[1]:.0f} | 1.00x |",
        f"| 2 | {results[2]:.0f} | {results[2] / results[1]:.2f}x |",
    ])
    print(text)
    if "--write" in argv:
        command = "python benchmarks/collect_throughput.py " + " ".join(argv)
        update_benchmarks_section("Collection throughput", text, command, machine_description())


if __name__ == "__main__":
    main(sys.argv[1:])
