"""Planning and training when another process shares the CPU cores, with both OpenMP wait policies.

torch's OpenMP threads wait for each other between parallel regions. With the default (active) policy
they spin, which costs nothing on idle cores but, when another busy process shares the cores, a spinning
thread holds a core its partner needs: small, frequent parallel regions (a CEM step is hundreds of
them) then crawl. Sleeping waits (``OMP_WAIT_POLICY=PASSIVE``) cure that but slow idle cores down;
``GOMP_SPINCOUNT=1000`` spins briefly, then sleeps. This measures the three, idle and next to a busy
process (a torch training loop, or MuJoCo rollouts), each in a fresh subprocess; jepa_wm sets the
setting with the smallest worst case (``GOMP_SPINCOUNT=1000``) before torch loads, unless the user
chose one.

    python benchmarks/contention.py --write
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _report import machine_description, update_benchmarks_section

from jepa_wm.cli import benchmark
from jepa_wm.config import command_line

ROOT = Path(__file__).resolve().parents[1]
MEASURE = r"""
import jepa_wm, time, statistics, torch
from jepa_wm.config import compose, model_config, load_group, to_dict
from jepa_wm.module import JEPAWorldModel
from jepa_wm.data.envs import make_env
from jepa_wm.planning.costs import LatentGoalCost
from jepa_wm.planning.experiment import planner_from_settings
plan = compose("plan")
cfg = model_config()
model = JEPAWorldModel(cfg, (64, 64, 3), 2 * cfg.frameskip).eval()
env = make_env(to_dict(load_group("env", "reacher-easy")))
cost = LatentGoalCost.from_config(model, plan.cost).make_cost(env, [env.reset(seed=0)[0]], [])
planner = planner_from_settings(to_dict(plan.planner), plan.mpc.horizon, model.action_dim, "cpu", 0)
planner.plan(cost)
plans = []
for _ in range(7):
    start = time.perf_counter(); planner.plan(cost); plans.append(time.perf_counter() - start)
model.train()
optimizer = torch.optim.AdamW(model.parameters(), 1e-3)
batch = {"obs": torch.randint(0, 256, (64, 5, 64, 64, 3), dtype=torch.uint8), "actions": torch.rand(64, 4, model.action_dim),
         "physics": torch.zeros(64, 5, 4), "position": torch.zeros(64, 5, 2)}
steps = []
for index in range(6):
    start = time.perf_counter(); loss, _ = model.compute_losses(batch); optimizer.zero_grad(); loss.backward(); optimizer.step()
    if index: steps.append(time.perf_counter() - start)
print(statistics.median(plans) * 1000, statistics.median(steps) * 1000)
"""
# Two kinds of neighbours a researcher's machine has: another torch training run, and a simulator.
HOGS = {
    "torch training": "import torch\nx = torch.rand(64, 3, 64, 64)\nconv = torch.nn.Conv2d(3, 32, 4, 2, 1)\n"
                      "while True: conv(x).sum().backward()",
    "MuJoCo rollouts": "import mujoco, numpy as np\nfrom mujoco import rollout\nfrom dm_control import suite\n"
                       "physics = suite.load('cartpole', 'swingup').physics\nmodel = physics.model.ptr\n"
                       "datas = [mujoco.MjData(model) for _ in range(2)]\n"
                       "state = np.zeros((1, mujoco.mj_stateSize(model, mujoco.mjtState.mjSTATE_FULLPHYSICS)))\n"
                       "controls = np.random.uniform(-1, 1, (300, 200, 1))\n"
                       "while True: rollout.rollout(model, datas, state, controls)",
}
SETTINGS = {"active": {"OMP_WAIT_POLICY": "ACTIVE"}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
            "spin 1000": {"OMP_WAIT_POLICY": "", "GOMP_SPINCOUNT": "1000"}}


def measure(setting: dict, hog: str | None) -> tuple[float, float]:
    """(ms per CEM planning call, ms per training step) in a fresh process, next to ``hog`` if any."""
    env = {**{key: value for key, value in os.environ.items() if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")},
           **{key: value for key, value in setting.items() if value}}
    if "OMP_WAIT_POLICY" not in env:
        env["OMP_WAIT_POLICY"] = ""  # unset: jepa_wm's default applies only to an absent variable
    busy = hog is not None
    hog = subprocess.Popen([sys.executable, "-c", HOGS[hog]], cwd=ROOT) if busy else None
    try:
        if hog:
            time.sleep(1.0)
        output = subprocess.run([sys.executable, "-c", MEASURE], cwd=ROOT, env=env, capture_output=True, text=True,
                                check=True, timeout=1800).stdout.split()
    finally:
        if hog:
            hog.kill()
            hog.wait()
    return float(output[-2]), float(output[-1])


def main(argv: list[str]) -> None:
    options, flags = command_line(argv, {"repeats": 3})
    repeats = options["repeats"]
    load_before = os.getloadavg()[0]
    results = {}
    for name, setting in SETTINGS.items():
        for hog in (None, *HOGS):
            runs = [measure(setting, hog) for _ in range(repeats)]
            results[(name, hog)] = (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs))
            print(name, hog or "idle", results[(name, hog)], flush=True)
    load_after = os.getloadavg()[0]
    lines = [
        f"Default pixel model, CEM from configs/plan.yaml (300 x 10, horizon 5) and one training step (batch 64); "
        f"median of 7 planning calls / 5 steps per process, median of {repeats} processes, each next to nothing or "
        f"to a busy neighbour process on the same 2 cores. Wait settings: OMP_WAIT_POLICY=ACTIVE, =PASSIVE, or "
        f"GOMP_SPINCOUNT=1000 (spin briefly, then sleep; jepa_wm's default unless you set either variable). Load average (1 min) before / after: {load_before:.2f} / "
        f"{load_after:.2f}.",
        "",
        "| OpenMP waits | neighbour | planning ms / MPC step | vs idle | training ms / step | vs idle |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for (name, hog), (plan_ms, step_ms) in results.items():
        idle_plan, idle_step = results[(name, None)]
        lines.append(f"| {name} | {hog or 'none (idle)'} | {plan_ms:.1f} | {plan_ms / idle_plan:.1f}x | "
                     f"{step_ms:.0f} | {step_ms / idle_step:.1f}x |")
    text = "\n".join(lines)
    print(text)
    if "--write" in flags:
        update_benchmarks_section("Planning under CPU contention", text, "python benchmarks/contention.py " + " ".join(argv),
                                  machine_description("cpu"))


if __name__ == "__main__":
    benchmark(main)
