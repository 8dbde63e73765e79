"""The on-paper part of bench/bench_scale.py: greedy list scheduling of measured training durations."""

from __future__ import annotations

import pytest

from bench.bench_scale import cyclic, simulate


def test_equal_tasks_split_evenly_and_each_pays_the_overhead():
    assert simulate([3.0] * 4, 2) == 6.0  # two durations each
    assert simulate([3.0] * 4, 2, overhead=0.5) == pytest.approx(2 * 3.0 + 2 * 0.5)
    assert simulate([3.0] * 4, 1, overhead=0.5) == pytest.approx(4 * 3.5)
    assert simulate([3.0] * 4, 8, overhead=0.5) == pytest.approx(3.5)  # more workers than tasks


def test_uneven_tasks_go_to_the_first_free_worker():
    # workers A, B. t=0: 5 -> A (free at 5), 1 -> B (1); t=1: 1 -> B (2); t=2: 4 -> B (6); t=5: 2 -> A (7)
    assert simulate([5.0, 1.0, 1.0, 4.0, 2.0], 2) == 7.0
    # the same with 1 s overhead: A 6, B 2, B 4, B 9, A 9
    assert simulate([5.0, 1.0, 1.0, 4.0, 2.0], 2, overhead=1.0) == 9.0
    # greedy in submit order, not the best schedule: a long task last leaves the others idle
    assert simulate([1.0, 1.0, 1.0, 1.0, 4.0], 2) == 6.0  # A 1, B 1, A 2, B 2, A 6 (best is 4)
    assert simulate([4.0, 1.0, 1.0, 1.0, 1.0], 2) == 4.0  # A 4, B 1, 2, 3, 4
    assert simulate([2.0, 3.0, 4.0], 3) == 4.0


def test_no_tasks_and_bad_input():
    assert simulate([], 4) == 0.0
    with pytest.raises(ValueError):
        simulate([1.0], 0)
    with pytest.raises(ValueError):
        simulate([-1.0], 1)
    with pytest.raises(ValueError):
        simulate([1.0], 1, overhead=-0.1)


def test_cyclic_draws_in_order_and_starts_over():
    assert cyclic([1.0, 2.0, 3.0], 7) == [1.0, 2.0, 3.0, 1.0, 2.0, 3.0, 1.0]
    assert cyclic([1.0, 2.0], 1) == [1.0]
    with pytest.raises(ValueError):
        cyclic([], 3)


def test_speed_up_of_a_big_batch_tracks_the_worker_count():
    tasks = cyclic([10.0, 12.0, 8.0], 64)
    one = simulate(tasks, 1, 0.1)
    assert one / simulate(tasks, 2, 0.1) == pytest.approx(2.0, rel=0.05)
    assert one / simulate(tasks, 32, 0.1) < 32
