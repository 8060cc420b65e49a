"""The runtime's partition state machines (pure logic)."""

from __future__ import annotations

from consumers.partitions import PartitionState, Pauses

TP = ("tier", 0)


def test_records_are_taken_in_order_and_the_finished_prefix_is_stored() -> None:
    state = PartitionState(TP)
    assert [state.take(offset) for offset in (10, 11, 12)] == [True, True, True]
    assert state.finish(11) is None  # 10 is still in progress
    assert state.finish(10) == 12
    assert not state.idle
    assert state.finish(12) == 13
    assert state.idle


def test_a_deferred_head_puts_back_its_record_and_skips_what_was_fetched_after_it() -> None:
    state = PartitionState(TP)
    assert state.take(5)
    state.put_back(5)
    assert (state.deferred, state.idle) == (True, True)
    assert not state.take(6)  # fetched before the seek took effect: read again later
    assert state.wake()
    assert state.take(5)  # read again after the seek
    assert not state.take(5)  # a stale re-read of the same offset
    assert state.take(6)
    assert state.finish(5) == 6
    assert state.finish(6) == 7


def test_a_revoked_partition_stores_nothing_itself_for_work_finishing_late() -> None:
    state = PartitionState(TP)
    state.take(1)
    state.take(2)
    assert state.finish(1) == 2
    state.revoke()
    assert state.finish(2) is None  # not stored by itself after the revocation...
    assert state.tracker.committable == 3  # ...but committed by the revocation, which waits for the work
    assert not state.take(3)
    assert not state.wake()  # a deferral timer firing late resumes nothing


def test_a_failed_or_abandoned_record_blocks_every_later_offset() -> None:
    state = PartitionState(TP)
    for offset in (1, 2, 3):
        state.take(offset)
    state.fail()  # offset 1's work failed
    state.abandon()  # offset 2's work never started
    assert state.finish(3) is None
    assert state.idle
    assert state.tracker.committable is None


def test_pauses_keep_a_deferred_partition_paused_through_a_throttle() -> None:
    pauses = Pauses()
    both = [("t", 0), ("t", 1)]
    assert pauses.defer(("t", 0)) == [("t", 0)]
    assert pauses.throttle(both) == both
    assert pauses.unthrottle(both) == [("t", 1)]  # the deferred one waits for its wake-up
    assert pauses.throttle(both) == both
    assert pauses.wake(("t", 0)) == []  # resumes with the rest
    assert pauses.assigned([("t", 2)]) == ([("t", 2)], [])  # a new partition stays paused while full
    assert pauses.unthrottle([*both, ("t", 2)]) == [*both, ("t", 2)]
    assert pauses.assigned([("t", 3)]) == ([], [("t", 3)])


def test_a_revoked_deferred_partition_is_forgotten() -> None:
    pauses = Pauses()
    pauses.defer(("t", 0))
    pauses.forget([("t", 0)])
    pauses.throttle([("t", 0)])
    assert pauses.unthrottle([("t", 0)]) == [("t", 0)]  # assigned again later: not held back
