"""The id-keyed replay buffer (DESIGN §6 "Replay buffer", §12: no forgotten id survives a request)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from clu.replay import ReplayBuffer


def _labels_of(buf: ReplayBuffer) -> dict[int, int]:
    s = buf.state_dict()
    return dict(zip(s["ids"], s["labels"]))


def _task(classes: tuple[int, ...], per_class: int, start: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` consecutive ids per class, starting at id ``start``."""
    labels = np.repeat(np.array(classes), per_class)
    return np.arange(start, start + len(labels)), labels


# ----------------------------------------------------------------------------------- class-balanced


def test_class_balanced_keeps_capacity_and_equal_shares_after_several_adds():
    buf = ReplayBuffer(11, "class_balanced")
    rng = np.random.default_rng(0)
    offered: dict[int, int] = {}
    start = 0
    for n_classes, classes in enumerate([(0, 1), (2, 3), (4,), (5, 6, 7)], start=1):
        ids, labels = _task(classes, 20, start)
        start += len(ids)
        offered.update(zip(ids.tolist(), labels.tolist()))
        buf.add(ids, labels, rng)

        held = _labels_of(buf)
        assert len(buf) <= buf.capacity
        # every class seen so far has at least its quota of samples, so the buffer is full
        assert len(buf) == buf.capacity
        counts = Counter(held.values())
        seen_classes = {c for c in offered.values()}
        assert set(counts) == seen_classes  # no class is dropped entirely (11 slots >= 8 classes)
        assert max(counts.values()) - min(counts.values()) <= 1, counts
        # it stores real samples with their true labels, nothing invented
        assert all(offered[i] == y for i, y in held.items())


def test_class_balanced_redistributes_after_a_class_is_removed():
    buf = ReplayBuffer(12, "class_balanced")
    rng = np.random.default_rng(1)
    ids, labels = _task((0, 1, 2), 10, 0)
    buf.add(ids, labels, rng)
    assert Counter(_labels_of(buf).values()) == {0: 4, 1: 4, 2: 4}
    gone = [i for i, y in _labels_of(buf).items() if y == 1]
    buf.remove(np.arange(10, 20))  # every sample of class 1 (held or not)
    assert not set(gone) & set(buf.ids())
    ids2, labels2 = _task((3,), 10, 100)
    buf.add(ids2, labels2, rng)
    counts = Counter(_labels_of(buf).values())
    assert 1 not in counts  # a removed class never comes back by itself
    assert counts[3] == 4 and counts[0] == 4 and counts[2] == 4


# --------------------------------------------------------------------------------------- reservoir


def test_reservoir_keeps_capacity_from_the_whole_stream():
    buf = ReplayBuffer(10, "reservoir")
    rng = np.random.default_rng(0)
    for start in range(0, 100, 25):
        ids = np.arange(start, start + 25)
        buf.add(ids, ids % 3, rng)
        assert len(buf) == min(10, start + 25)
    assert len(buf) == 10
    assert set(buf.ids()) <= set(range(100))
    assert buf.state_dict()["seen"] == 100
    # reservoir sampling replaces slots with later samples (P[all 10 from the first 25] ~ 1e-6)
    assert max(buf.ids()) >= 25
    assert all(y == i % 3 for i, y in _labels_of(buf).items())


def test_reservoir_below_capacity_keeps_everything():
    buf = ReplayBuffer(50, "reservoir")
    buf.add(np.arange(30), np.zeros(30, dtype=int), np.random.default_rng(0))
    assert buf.ids() == tuple(range(30))


def test_zero_capacity_stores_nothing():
    buf = ReplayBuffer(0)
    buf.add(np.arange(5), np.zeros(5, dtype=int), np.random.default_rng(0))
    assert len(buf) == 0 and buf.ids() == ()
    assert len(buf.sample(4, torch.Generator().manual_seed(0))) == 0


def test_negative_capacity_is_refused():
    with pytest.raises(ValueError):
        ReplayBuffer(-1)


# -------------------------------------------------------------------------------- remove / sample


@pytest.mark.parametrize("policy", ["class_balanced", "reservoir"])
def test_remove_deletes_exactly_the_given_ids(policy):
    buf = ReplayBuffer(20, policy)
    ids, labels = _task((0, 1), 10, 0)
    buf.add(ids, labels, np.random.default_rng(0))
    before = _labels_of(buf)
    assert set(before) == set(range(20))
    removed = buf.remove([3, 7, 15, 999])  # 999 was never there
    assert sorted(removed) == [3, 7, 15]
    after = _labels_of(buf)
    assert set(after) == set(before) - {3, 7, 15}
    assert all(after[i] == before[i] for i in after)  # the others keep their labels
    assert 3 not in buf and 7 not in buf and 4 in buf
    assert buf.remove([3, 7]) == []  # removing twice removes nothing


@pytest.mark.parametrize("n", [5, 17, 40])
def test_sample_never_returns_a_removed_id(n):
    buf = ReplayBuffer(20, "class_balanced")
    ids, labels = _task((0, 1), 10, 0)
    buf.add(ids, labels, np.random.default_rng(0))
    gone = {0, 1, 2, 10, 11}
    buf.remove(sorted(gone))
    left = set(buf.ids())
    assert len(left) == 15
    for seed in range(30):
        s = buf.sample(n, torch.Generator().manual_seed(seed))
        assert s.dtype == torch.long and len(s) == n
        drawn = set(s.tolist())
        assert drawn <= left and not drawn & gone
        if n <= len(left):
            assert len(drawn) == n  # without replacement while the buffer is large enough


def test_sample_is_reproducible_for_a_generator_state():
    buf = ReplayBuffer(20)
    ids, labels = _task((0, 1), 10, 0)
    buf.add(ids, labels, np.random.default_rng(0))
    a = buf.sample(8, torch.Generator().manual_seed(3))
    b = buf.sample(8, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)


# -------------------------------------------------------------------------------- determinism / state


def _fill(policy: str, seed: int) -> ReplayBuffer:
    buf = ReplayBuffer(15, policy)  # type: ignore[arg-type]
    rng = np.random.default_rng(seed)
    for k, classes in enumerate([(0, 1), (2, 3), (4, 5)]):
        ids, labels = _task(classes, 25, 100 * k)
        buf.add(ids, labels, rng)
    return buf


@pytest.mark.parametrize("policy", ["class_balanced", "reservoir"])
def test_same_rng_gives_the_same_content(policy):
    assert _fill(policy, 7).state_dict() == _fill(policy, 7).state_dict()
    # and the rng matters (otherwise the test above proves nothing)
    assert any(_fill(policy, 7).ids() != _fill(policy, s).ids() for s in range(8, 12))


@pytest.mark.parametrize("policy", ["class_balanced", "reservoir"])
def test_state_dict_round_trip_continues_identically(policy):
    a = _fill(policy, 0)
    a.remove(list(a.ids())[:3])
    b = ReplayBuffer(15, policy)  # type: ignore[arg-type]
    b.load_state_dict(a.state_dict())
    assert b.ids() == a.ids() and _labels_of(b) == _labels_of(a)
    assert b.state_dict() == a.state_dict()
    # the restored buffer behaves exactly like the original from here on
    ids, labels = _task((6, 7), 25, 1000)
    a.add(ids, labels, np.random.default_rng(5))
    b.add(ids, labels, np.random.default_rng(5))
    assert a.state_dict() == b.state_dict()
    g = torch.Generator().manual_seed(1)
    h = torch.Generator().manual_seed(1)
    assert torch.equal(a.sample(9, g), b.sample(9, h))
