"""jepa_wm: JEPA world models that predict the consequences of actions in an embedding space.

Exports load lazily, so that ``jepa_wm.config`` (used by every script) does not import Lightning.
"""

import os

# torch's OpenMP threads wait for each other by spinning, which turns a shared CPU into a crawl: next to
# another busy process, a CEM step took 184 ms instead of 37 ms. Sleeping waits (OMP_WAIT_POLICY=PASSIVE)
# cure that (69 ms) but cost 1.7x on idle cores (63 ms); spinning briefly, then sleeping
# (GOMP_SPINCOUNT=1000) keeps the idle speed (34 ms) and most of the cure (82-100 ms): the smallest worst
# case (BENCHMARKS.md, "Planning under CPU contention"). It must be set before torch is first imported,
# which importing jepa_wm, data or planning first guarantees; a wait setting the user chose is kept.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "1000"

__all__ = ["CheckpointError", "JEPAWorldModel", "WorldModel", "load_world_model"]


def __getattr__(name):
    if name == "CheckpointError":
        from jepa_wm.errors import CheckpointError

        return CheckpointError
    if name == "load_world_model":
        from jepa_wm.checkpoint import load_world_model

        return load_world_model
    if name == "WorldModel":
        from jepa_wm.world_model import WorldModel

        return WorldModel
    if name == "JEPAWorldModel":
        from jepa_wm.module import JEPAWorldModel

        return JEPAWorldModel
    raise AttributeError(f"module 'jepa_wm' has no attribute '{name}'")
