"""jepa_wm: JEPA world models that predict the consequences of actions in an embedding space.

Exports load lazily, so that ``jepa_wm.config`` (used by every script) does not import Lightning.
"""

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
