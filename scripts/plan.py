"""Plan with a trained world model in a goal-reaching task and report success rates.

    python scripts/plan.py checkpoint=runs/X/checkpoints/last.ckpt env=reacher-easy planner=cem \
        episodes=50 seed=0 baselines=true

Writes report.json, plot.png and episodes.gif under out= and prints the success table.
"""

from _cli import print_result, run_cli
from jepa_wm.config import compose
from planning.experiment import run_plan


def main(argv: list[str]) -> None:
    result = run_plan(compose("plan", argv))
    print_result(result)


if __name__ == "__main__":
    run_cli(main)
