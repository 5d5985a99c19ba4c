"""DeepMind Control goal-reaching tasks, offline trajectory collection, datasets and data modules."""
