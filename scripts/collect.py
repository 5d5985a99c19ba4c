"""Collect goal-reaching episodes from a DeepMind Control task into a dataset directory.

    python scripts/collect.py env=reacher-easy episodes=200 out=datasets/reacher-easy workers=2

Interrupted collections resume: run the same command again.
"""

from _cli import run_cli


def main(argv: list[str]) -> None:
    from data.collect import collect_from_config
    from jepa_wm.config import compose

    print(f"dataset: {collect_from_config(compose('collect', argv))}")


if __name__ == "__main__":
    run_cli(main)
