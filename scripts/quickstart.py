"""From nothing to a planning result: collect reacher-easy data, train a world model, plan to goals.

    python scripts/quickstart.py            # CPU-sized defaults
    python scripts/quickstart.py full=true  # full size

Rerunning reuses the finished dataset and checkpoint (fresh=true redoes everything).
"""

from _cli import print_result, run_cli


def main(argv: list[str]) -> None:
    from jepa_wm.config import compose
    from planning.pipeline import run_quickstart

    result = run_quickstart(compose("quickstart", argv))
    print()
    print_result(result)


if __name__ == "__main__":
    run_cli(main)
