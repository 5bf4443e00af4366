"""Scale-out on ``torch.distributed`` (launched with ``torchrun``): one clip split over ranks.

* :mod:`.group`: which processes share a job (``process_group=`` resolution), and joining the
  group ``torchrun`` describes in the environment (gloo on CPU, NCCL + gloo on GPUs).
* :mod:`.session`: a split job's agreements, so that a failure on any rank stops every rank with
  the same :class:`RankFailed` instead of leaving the others waiting.
* :mod:`.exchange`: :class:`DecodeSplit`, the streaming decode's ``split=`` hook: which rank
  decodes which tiles (or windows), and the gather of finished pieces to rank 0 in a fixed order.
* :mod:`.decode`: rank 0's decode inputs (latents, RNG state, tile size) shared with every rank.
* :mod:`.context`: diffusers' own context parallelism for the transformer, where it applies.

Batch renders (many clips, whole clips per rank) are in :mod:`vidmem.batch`. The family adapters
never import this package: the decode engine sees only the ``split=`` hook.
"""

from .context import ContextParallel, enable_context_parallel
from .exchange import DecodeSplit
from .group import Group, init_from_environment, resolve_group, shutdown
from ..errors import GroupBroken, RankFailed
from .session import Session, SoloSession, SplitSession, split_job

__all__ = ["ContextParallel", "DecodeSplit", "Group", "GroupBroken", "RankFailed", "Session",
           "SoloSession", "SplitSession", "enable_context_parallel", "init_from_environment", "resolve_group",
           "shutdown", "split_job"]
