"""Plan with a trained world model in a goal-reaching task and report success rates.

    python scripts/plan.py checkpoint=runs/X/checkpoints/last.ckpt planner=cem episodes=50 baselines=true
    python scripts/plan.py checkpoint=... env=reacher-offset25 split=test   # another goal protocol

Plans in the task recorded in the checkpoint unless env= names another with the same dynamics.
Writes report.json, plot.png and episodes.gif under out= and prints the success table.
"""

from _cli import print_result, run_cli


def main(argv: list[str]) -> None:
    from jepa_wm.config import compose
    from jepa_wm.zoo import PRETRAINED_PREFIX, describe_pretrained
    from planning.experiment import run_plan

    cfg = compose("plan", argv)
    if cfg.checkpoint == PRETRAINED_PREFIX:  # `checkpoint=pretrained:` alone lists the shipped models
        print(describe_pretrained())
        return
    print_result(run_plan(cfg))


if __name__ == "__main__":
    run_cli(main)
