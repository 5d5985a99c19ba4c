"""Convert a format-1 dataset (compressed .npz shards) to format 2 (one .npy file per array).

    python scripts/convert_dataset.py path=datasets/reacher-easy-0            # in place
    python scripts/convert_dataset.py path=datasets/old out=datasets/new      # into a new directory

A killed conversion leaves the old dataset usable; rerun the same command to finish it. Reacher's
format-1 state vectors point at the goal, so they are dropped (pixels, physics, positions and actions
are kept); recollect with scripts/collect.py to train on states.
"""

from _cli import run_cli

from data.convert import convert_dataset
from jepa_wm.errors import ConfigError

USAGE = "usage: python scripts/convert_dataset.py path=DATASET [out=NEW_DIRECTORY]"


def main(argv: list[str]) -> None:
    options = dict(arg.split("=", 1) for arg in argv if "=" in arg)
    unknown = [arg for arg in argv if "=" not in arg or arg.split("=", 1)[0] not in ("path", "out")]
    if unknown or not options.get("path"):
        raise ConfigError(f"{USAGE} (got {' '.join(argv) or 'no arguments'})")
    print(convert_dataset(options["path"], options.get("out") or None)["message"])


if __name__ == "__main__":
    run_cli(main)
