"""Component offload within a memory budget: each stage simulated at the render's shape
(``simulate``, ``kernel_rules``, ``stages``; checked against real runs by ``measure``), what is
read from the pipeline and the device (``introspect``), the plan (``plan``: pure data and
arithmetic), making one (``planner``), float8 storage (``fp8``), and installing a plan
(``apply``: hooks)."""

from .apply import AppliedPlan, apply_plan
from .introspect import module_bytes
from .plan import ComponentPlan, OffloadPlan
from .planner import plan_offload
from .simulate import SimResult, simulate_call
from .stages import StageSimulation, Workload, simulate_stages

__all__ = ["AppliedPlan", "ComponentPlan", "OffloadPlan", "SimResult", "StageSimulation",
           "Workload", "apply_plan", "module_bytes", "plan_offload", "simulate_call",
           "simulate_stages"]
