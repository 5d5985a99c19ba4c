"""Train a JEPA world model on a collected dataset.

    python scripts/train.py data.path=datasets/reacher-easy-0 trainer.max_steps=5000
    python scripts/train.py data.path=... model=state trainer.devices=4 trainer.strategy=ddp

Every key of configs/train.yaml (and of the chosen configs/model/ file, under model.) can be set as
key=value; this is also what a W&B sweep agent passes.
"""

from _cli import run_cli


def main(argv: list[str]) -> None:
    from jepa_wm.config import compose
    from planning.pipeline import train_from_config

    from pytorch_lightning.utilities import rank_zero_only

    out = train_from_config(compose("train", argv))
    if rank_zero_only.rank == 0:  # one line per run, also when every process of a DDP run gets here
        print(f"run: {out}\ncheckpoint: {out / 'checkpoints' / 'last.ckpt'}")


if __name__ == "__main__":
    run_cli(main)
