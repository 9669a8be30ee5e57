"""The splice that puts a joiner's messages into one direction of a relayed stream."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from openssm.protocol.splice import Splice, SpliceFull, SpliceState


def test_identity_until_first_injection() -> None:
    splice = Splice()
    assert [splice.forward(u).sequence for u in range(5)] == [0, 1, 2, 3, 4]
    assert splice.acknowledged(3).upstream == 3
    assert not splice.active


def test_injection_shifts_later_messages_and_its_ack_is_the_gateways() -> None:
    splice = Splice()
    assert splice.forward(0).sequence == 0
    assert splice.forward(1).sequence == 1
    assert splice.inject() == 2
    assert splice.forward(2).sequence == 3
    assert splice.forward(1).sequence == 1  # a resend keeps its place
    assert splice.acknowledged(2).upstream is None
    assert splice.acknowledged(3).upstream == 2
    assert splice.acknowledged(1).upstream == 1


def test_points_are_forgotten_once_acknowledged_and_old_resends_answered() -> None:
    splice = Splice()
    for u in range(3):
        splice.forward(u)
    first = splice.inject()
    splice.forward(3)
    for d in range(5):
        splice.acknowledged(d)
    assert splice.injected == [] and splice.base == 1
    assert splice.forward(1).acked  # acknowledged long ago: the gateway answers the sender
    assert splice.forward(3).sequence == 4  # at the last point: the mapping still holds
    assert splice.forward(4).sequence == 5
    assert splice.acknowledged(first).upstream is None  # a repeated ack of the gateway's message
    assert splice.acknowledged(5).upstream == 4


def test_too_many_unacknowledged_injections_are_refused() -> None:
    splice = Splice(max_points=2)
    splice.inject()
    splice.inject()
    with pytest.raises(SpliceFull):
        splice.inject()


def test_what_a_kept_state_must_hold_is_flagged_and_a_restored_splice_goes_on_from_it() -> None:
    splice = Splice()
    assert splice.forward(0).moved and not splice.forward(0).moved  # a resend moves nothing
    assert splice.inject() == 1
    assert splice.forward(1).sequence == 2
    assert splice.acknowledged(2).moved and not splice.acknowledged(2).moved  # (ahead of the floor)
    state = splice.state()
    assert state == SpliceState(2, 0, (1,), 0, -1, 0, (2,))
    again = Splice.restored(state)
    assert again.acknowledged(0).upstream == 0 and again.acknowledged(1).upstream is None  # the point's
    assert again.state().acked_floor == 3 and again.state().injected == ()  # forgotten, past 2 as well
    assert again.forward(0).acked  # the sender's resend of 0: answered by the gateway
    assert again.forward(2).sequence == 3
    with pytest.raises(ValueError):
        Splice.restored(SpliceState(2, 0, (3, 1), 0, -1, 0))


def test_negative_numbers_refused() -> None:
    with pytest.raises(ValueError):
        Splice().forward(-1)
    with pytest.raises(ValueError):
        Splice().acknowledged(-1)


# A run: ("send",) the sender's next message, ("resend", k) one of its unacked ones again,
# ("inject",) a gateway message, ("ack", k) the receiver acks one of the messages it has.
_steps = st.lists(
    st.one_of(
        st.just(("send", 0)),
        st.just(("inject", 0)),
        st.tuples(st.just("resend"), st.integers(0, 1000)),
        st.tuples(st.just("ack"), st.integers(0, 1000)),
    ),
    max_size=300,
)


@settings(max_examples=300, deadline=None)
@given(_steps, st.integers(0, 2**31))
def test_receiver_sees_one_consistent_order_and_acks_map_back(
    steps: list[tuple[str, int]], seed: int
) -> None:
    """Whatever the interleaving of sends, resends, injections and acks: every message keeps one
    downstream number (so the receiver's in-order stream is sender and gateway messages merged in
    the order the gateway saw them), and each ack goes back to whoever sent that message."""
    rng = random.Random(seed)
    splice = Splice()
    next_upstream = 0
    sender_unacked: set[int] = set()
    owner: dict[int, tuple[str, int]] = {}  # downstream number -> ("up", u) | ("gw", i)
    injected = 0
    received: set[int] = set()  # downstream numbers the receiver holds
    acked_upstream: set[int] = set()
    for kind, value in steps:
        if kind == "send" or (kind == "resend" and sender_unacked):
            if kind == "send":
                upstream = next_upstream
                next_upstream += 1
                sender_unacked.add(upstream)
            else:
                upstream = sorted(sender_unacked)[value % len(sender_unacked)]
            forward = splice.forward(upstream)
            if forward.acked:
                assert upstream in acked_upstream or all(
                    d in received for d, who in owner.items() if who == ("up", upstream)
                )
                sender_unacked.discard(upstream)
                continue
            assert owner.setdefault(forward.sequence, ("up", upstream)) == ("up", upstream)
            received.add(forward.sequence)
        elif kind == "inject":
            downstream = splice.inject()
            assert downstream not in owner
            owner[downstream] = ("gw", injected)
            injected += 1
            received.add(downstream)
        elif kind == "ack" and received:
            downstream = sorted(received)[value % len(received)] if rng.random() < 0.8 else min(received)
            ack = splice.acknowledged(downstream)
            who = owner[downstream]
            if ack.upstream is None:
                # The gateway's own, or a repeat of an ack the sender already had.
                assert who[0] == "gw" or who[1] in acked_upstream or who[1] not in sender_unacked
            else:
                assert who == ("up", ack.upstream)
                acked_upstream.add(ack.upstream)
                sender_unacked.discard(ack.upstream)
    # Downstream numbers are dense from 0 and, in order, upstream numbers stay ascending.
    assert sorted(owner) == list(range(len(owner)))
    ups = [who[1] for _d, who in sorted(owner.items()) if who[0] == "up"]
    assert ups == sorted(ups)
    gws = [who[1] for _d, who in sorted(owner.items()) if who[0] == "gw"]
    assert gws == sorted(gws)
