"""Latent-space planning: planners, costs, model-predictive control and goal-reaching evaluation."""

from jepa_wm.planning.costs import LatentGoalCost, SimulatorCost
from jepa_wm.planning.mpc import MPCController, RandomController
from jepa_wm.planning.planners import CEM, MPPI, GradientPlanner, Planner, PlanResult, build_planner

import jepa_wm  # noqa: F401,E402  (sets the OpenMP wait policy before torch loads)

__all__ = ["CEM", "MPPI", "GradientPlanner", "Planner", "PlanResult", "build_planner", "LatentGoalCost",
           "SimulatorCost", "MPCController", "RandomController"]
