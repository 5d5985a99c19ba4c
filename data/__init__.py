"""DeepMind Control goal-reaching tasks, offline trajectory collection, datasets and data modules."""

import jepa_wm  # noqa: F401,E402  (sets the OpenMP wait policy before torch loads)
