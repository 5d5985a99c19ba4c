"""Collect goal-reaching episodes from a DeepMind Control task into a dataset directory.

    python scripts/collect.py env=reacher-easy episodes=200 out=datasets/reacher-easy workers=2

Interrupted collections resume: run the same command again.
"""

from _cli import run_cli
from data.collect import collect
from jepa_wm.config import compose, to_dict


def main(argv: list[str]) -> None:
    cfg = compose("collect", argv)
    out = cfg.out or f"datasets/{cfg.env.name}-{cfg.seed}"
    policy = to_dict(cfg.policy)
    if policy["name"] != "ou":
        policy = {"name": policy["name"]}
    path = collect(to_dict(cfg.env), out, cfg.episodes, cfg.steps_per_episode, policy, seed=cfg.seed,
                   workers=cfg.workers, episodes_per_shard=cfg.episodes_per_shard, progress=cfg.progress)
    print(f"dataset: {path}")


if __name__ == "__main__":
    run_cli(main)
