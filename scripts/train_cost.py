"""Train a learned planning cost for a trained world model and store it inside its checkpoint.

    python scripts/train_cost.py checkpoint=runs/reacher/checkpoints/last.ckpt
    python scripts/train_cost.py checkpoint=runs/reacher/checkpoints/last.ckpt learned_cost=temporal out=temporal.ckpt

The cost learns from the world model's own training episodes (no pixels: its frozen embeddings); plan.py
then plans with it (cost.name=auto). Killed, it resumes where it stopped: rerun the same command.
"""

from _cli import run_cli


def main(argv: list[str]) -> None:
    import json

    from jepa_wm.config import compose
    from planning.pipeline import train_cost_from_config

    cfg = compose("train_cost", argv)
    metrics = train_cost_from_config(cfg)
    print(f"learned cost ({cfg.learned_cost.kind}) stored in {cfg.out or cfg.checkpoint}")
    print(json.dumps({key: round(value, 3) for key, value in metrics.items()}))


if __name__ == "__main__":
    run_cli(main)
