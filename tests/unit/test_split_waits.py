"""The split service waits for the annotation backlog before it writes a manifest (no AWS: a fake)."""

from __future__ import annotations

import pytest

from medimage.services.split import AnnotationInProgress, Splitter


class _Backlog:
    def __init__(self, counts):
        self.counts = list(counts)

    def pending(self):
        return self.counts.pop(0) if len(self.counts) > 1 else self.counts[0]


def test_commit_waits_for_the_annotation_backlog_then_gives_up():
    slept: list[float] = []
    # GIVEN a backlog that drains after two polls: the wait ends without error
    splitter = Splitter(None, None, None, None, 1, backlog=_Backlog([3, 1, 0]), wait_s=60, sleep=slept.append)
    splitter.wait_for_annotation()
    assert slept == [5.0, 5.0]
    # GIVEN a backlog that never drains: the commit fails after wait_s, to be retried
    stuck = Splitter(None, None, None, None, 1, backlog=_Backlog([4]), wait_s=10, sleep=slept.append)
    with pytest.raises(AnnotationInProgress, match="4 uploads are still being annotated after 10 s"):
        stuck.wait_for_annotation()
