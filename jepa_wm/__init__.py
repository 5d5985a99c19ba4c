"""jepa_wm: JEPA world models that predict the consequences of actions in an embedding space.

Exports load lazily, so that ``jepa_wm.config`` (used by every script) does not import Lightning.
"""

import os

# OpenMP threads that wait by spinning turn a shared CPU into a crawl: with another busy process on
# the cores, a CEM step went from 44 ms to 720 ms with 2 torch threads (52 ms with passive waiting; see
# BENCHMARKS.md, "Planning under CPU contention"). It must be set before torch is first imported, which
# importing jepa_wm, data or planning first guarantees; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["CheckpointError", "JEPAWorldModel", "load_world_model"]


def __getattr__(name):
    if name == "CheckpointError":
        from jepa_wm.errors import CheckpointError

        return CheckpointError
    if name == "load_world_model":
        from jepa_wm.checkpoint import load_world_model

        return load_world_model
    if name == "JEPAWorldModel":
        from jepa_wm.module import JEPAWorldModel

        return JEPAWorldModel
    raise AttributeError(f"module 'jepa_wm' has no attribute '{name}'")
