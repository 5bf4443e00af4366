"""Component offload sequencing within a memory budget: plan (pure arithmetic) and apply (hooks)."""

from .apply import AppliedPlan, apply_plan
from .plan import ComponentPlan, OffloadPlan, module_bytes, plan_offload

__all__ = ["AppliedPlan", "ComponentPlan", "OffloadPlan", "apply_plan", "module_bytes",
           "plan_offload"]
