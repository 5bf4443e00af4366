"""One session object (issue #28): a process alone runs the same code as a rank of a split job,
through ``SoloSession``; nothing asks "am I distributed?" before an agreement."""

from __future__ import annotations

import pytest

from vidmem.parallel import SoloSession, SplitSession, split_job


def test_a_solo_session_answers_for_one_process():
    solo = SplitSession.resolve(False)
    assert isinstance(solo, SoloSession) and isinstance(SplitSession.resolve(None), SoloSession)
    assert (solo.rank, solo.size, solo.is_writer, solo.splits) == (0, 1, True, False)
    assert solo.agree({"a": 1}) == [{"a": 1}]
    assert solo.share("payload") == "payload"
    with solo.guard():
        pass
    with pytest.raises(ValueError, match="mine"):  # nobody to tell: the error itself
        with solo.guard():
            raise ValueError("mine")
    with pytest.raises(KeyError):
        solo.agree(error=KeyError("k"))
    assert SplitSession.resolve(solo) is solo


def test_split_job_hands_a_solo_session_to_one_process():
    @split_job
    def job(*, process_group=None):
        return process_group

    assert isinstance(job(), SoloSession)
    assert isinstance(job(process_group=False), SoloSession)
    given = SoloSession()
    assert job(process_group=given) is given


def test_a_process_group_without_torch_distributed_is_refused_by_name():
    import torch.distributed as dist

    from vidmem import InvalidOptions

    assert not dist.is_initialized()
    with pytest.raises(InvalidOptions, match="torch.distributed is not initialized"):
        SplitSession.resolve(object())
