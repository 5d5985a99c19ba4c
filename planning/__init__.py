from planning.planners import CEM, MPPI, GradientPlanner, PlanResult, Planner, build_planner
