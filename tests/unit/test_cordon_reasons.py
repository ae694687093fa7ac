"""Cordon reasons as a set (pure: no table): what a pod's reasons are, which one it shows, and
that it is closed while any holds."""

from __future__ import annotations

import pytest

from podslots.model import Cordon, Pod, PodState, cordon_order, empty_slots, shown_cordon

OPERATOR, OUTDATED, DELETED = Cordon.OPERATOR.value, Cordon.OUTDATED.value, Cordon.POOL_DELETED.value


def pod(cordoned: str | None = None, cordons: frozenset[str] = frozenset()) -> Pod:
    return Pod("p", "p-1", PodState.READY, empty_slots(2), cordoned=cordoned, cordons=cordons)


def test_an_item_from_before_the_set_reads_as_a_set_of_its_one_reason():
    assert pod(cordoned=OPERATOR).cordon_reasons == {OPERATOR}
    assert pod(cordoned=DELETED).cordon_reasons == {DELETED}


def test_the_reasons_are_the_set_and_the_one_cordoned_names():
    assert pod(cordoned=OUTDATED, cordons=frozenset({OPERATOR, OUTDATED})).cordon_reasons == {OPERATOR, OUTDATED}
    # an item an older version cordoned after the set existed: its flag's reason still counts
    assert pod(cordoned=DELETED, cordons=frozenset({OPERATOR})).cordon_reasons == {OPERATOR, DELETED}


def test_a_pod_without_a_reason_is_in_service():
    assert pod().cordon_reasons == frozenset()
    assert pod().takes_tasks
    assert pod().in_service


@pytest.mark.parametrize(
    ("reasons", "shown"),
    [
        ({OPERATOR}, OPERATOR),
        ({OPERATOR, OUTDATED}, OUTDATED),
        ({OPERATOR, DELETED}, DELETED),
        ({OPERATOR, OUTDATED, DELETED}, DELETED),
        ({OPERATOR, "a reason from a newer version"}, OPERATOR),
        (set(), None),
    ],
)
def test_cordoned_shows_the_strongest_reason_the_one_no_operator_takes_back(reasons: set[str], shown: str | None):
    assert shown_cordon(reasons) == shown


def test_the_reasons_are_listed_strongest_first_unknown_ones_last():
    assert cordon_order({OPERATOR, "zeta", DELETED, OUTDATED}) == [DELETED, OUTDATED, OPERATOR, "zeta"]


def test_a_pod_is_closed_while_any_reason_holds():
    for reasons in ({OPERATOR}, {OUTDATED}, {OPERATOR, OUTDATED}):
        closed = pod(cordoned=shown_cordon(reasons), cordons=frozenset(reasons))
        assert not closed.takes_tasks
        assert not closed.in_service
