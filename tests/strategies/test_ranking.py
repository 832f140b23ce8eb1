"""Top-k with a dropout band (``strategies.ranking``): cases by hand and properties over any ranking."""
import math

import pytest
from hypothesis import given, strategies as st

from strategies.ranking import Selection, fill_slots, rank_symbols, select_holdings

NAMES = [f"S{k:02d}" for k in range(40)]


def test_rank_symbols_highest_first_ties_by_name_nan_left_out():
    assert rank_symbols({"B": 0.02, "A": 0.02, "C": 0.05, "D": -0.01, "E": math.nan}) == ["C", "A", "B", "D"]


def test_fill_slots_takes_the_best_for_the_free_slots():
    scores = {"B": 0.02, "A": 0.02, "C": 0.05, "D": -0.01}
    assert fill_slots(scores, 2) == ["C", "A"]
    assert fill_slots(scores, 9) == ["C", "A", "B", "D"]
    assert fill_slots(scores, 0) == fill_slots(scores, -3) == fill_slots({}, 5) == []


def test_a_holding_between_top_k_and_keep_k_is_kept_one_beyond_is_sold_the_top_k_are_filled():
    ranked = ["A", "B", "C", "D", "E", "F", "G"]
    # top_k 2, keep_k 4: C (3rd) and D (4th, the last kept rank) stay, F (6th) goes; no slot is free
    assert select_holdings(ranked, {"C", "D", "F"}, 2, 4) == Selection(("C", "D"), ("F",), (), ("A", "B"))
    # C stays and fills one slot; A, the best not held, takes the other; B is next in line
    assert select_holdings(ranked, {"C", "F"}, 2, 4) == Selection(("C",), ("F",), ("A",), ("B", "D"))
    # nothing held: the top_k are bought
    assert select_holdings(ranked, set(), 3, 5) == Selection((), (), ("A", "B", "C"), ("D", "E"))
    # a holding without a score at this rebalance (no bar, no prediction) is kept and fills a slot
    assert select_holdings(ranked, {"Z"}, 2, 4) == Selection(("Z",), (), ("A",), ("B", "C", "D"))


def test_keep_k_below_top_k_is_refused():
    with pytest.raises(ValueError, match="top_k <= keep_k"):
        select_holdings(["A"], set(), 3, 2)


@given(order=st.permutations(NAMES), held=st.sets(st.sampled_from(NAMES), max_size=25),
       top_k=st.integers(1, 20), extra=st.integers(0, 15), ranked_count=st.integers(0, 40))
def test_selection_properties(order, held, top_k, extra, ranked_count):
    keep_k = top_k + extra
    ranked = order[:ranked_count]
    position = {name: k for k, name in enumerate(ranked)}
    s = select_holdings(ranked, held, top_k, keep_k)
    # every holding is kept or sold, never both; sold exactly when ranked beyond keep_k
    assert set(s.keep) | set(s.sell) == held and not set(s.keep) & set(s.sell)
    assert all(position[name] >= keep_k for name in s.sell)
    assert all(name not in position or position[name] < keep_k for name in s.keep)
    # buys and the reserve: not held, in rank order, within keep_k; buys fill the top_k and no more
    new = [*s.buy, *s.reserve]
    assert new == [name for name in ranked[:keep_k] if name not in held]
    assert len(s.buy) == min(max(top_k - len(s.keep), 0), len(new))
    # with nothing held, the top_k are bought (as many as are ranked)
    if not held:
        assert list(s.buy) == ranked[:top_k]
    # a name in the top_k that is neither held nor bought can only be left out because the slots are full
    for name in ranked[:top_k]:
        if name not in held and name not in s.buy:
            assert len(s.keep) + len(s.buy) >= top_k
