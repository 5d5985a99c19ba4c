"""Train a JEPA world model on a collected dataset.

    python scripts/train.py data.path=datasets/reacher-easy-0 trainer.max_steps=1500
    python scripts/train.py data.path=... model=state trainer.devices=4 trainer.strategy=ddp

Every key of configs/train.yaml (and of the chosen configs/model/ file, under model.) can be set as
key=value; this is also what a W&B sweep agent passes. A task's own settings (``train_overrides`` of its
env config, e.g. point_mass-easy's) apply first, so the command line always wins.
"""

from _cli import run_cli


def main(argv: list[str]) -> None:
    from pytorch_lightning.utilities import rank_zero_only

    from planning.pipeline import train_config, train_from_config

    out = train_from_config(train_config(argv))
    if rank_zero_only.rank == 0:  # one line per run, also when every process of a DDP run gets here
        print(f"run: {out}\ncheckpoint: {out / 'checkpoints' / 'last.ckpt'}")


if __name__ == "__main__":
    run_cli(main)
