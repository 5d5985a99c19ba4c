"""Latent-space planning: planners, costs, model-predictive control and goal-reaching evaluation."""

import jepa_wm  # noqa: F401,E402  (sets the OpenMP wait policy before torch loads)
from planning.costs import LatentGoalCost, SimulatorCost
from planning.mpc import MPCController, RandomController
from planning.planners import CEM, MPPI, GradientPlanner, Planner, PlanResult, build_planner

__all__ = ["CEM", "MPPI", "GradientPlanner", "Planner", "PlanResult", "build_planner", "LatentGoalCost",
           "SimulatorCost", "MPCController", "RandomController"]
