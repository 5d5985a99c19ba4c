"""The YAML configs of every command (``<command>.yaml``) and their groups (``env/``, ``model/``, ``planner/``,
``learned_cost/``, ``sweeps/``): package data of ``jepa_wm.configs``."""
