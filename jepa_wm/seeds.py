"""Every seed stream, in one place: which random numbers a collection and an evaluation may use.

An episode's randomness comes from (seed, episode index, stream) alone, through ``numpy.random.SeedSequence``,
so data and evaluation episodes do not depend on worker counts or order, and streams never overlap:

- stream 0: a collected episode's env (its start, goal, physics noise); stream 1: its exploration policy;
- stream 2: "dev" evaluation episodes (tune anything on these); stream 3: "test" evaluation episodes (report
  these; nothing is ever chosen by looking at them).
"""

from __future__ import annotations

import numpy as np

COLLECTION_ENV, COLLECTION_POLICY = 0, 1
SPLIT_STREAMS = {"dev": 2, "test": 3}


def episode_seed(seed: int, episode: int, stream: int = COLLECTION_ENV) -> int:
    """Independent, reproducible seed for one episode of one stream."""
    return int(np.random.SeedSequence([seed, episode, stream]).generate_state(1)[0])


def evaluation_seed(seed: int, episode: int, split: str = "dev") -> int:
    """The env seed of evaluation episode ``episode`` of ``split`` ("dev" or "test")."""
    if split not in SPLIT_STREAMS:
        raise ValueError(f"unknown split '{split}' (choices: {', '.join(SPLIT_STREAMS)})")
    return episode_seed(seed, episode, SPLIT_STREAMS[split])
