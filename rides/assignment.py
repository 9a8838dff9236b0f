"""Who gets which driver: the matcher's decisions, apart from where candidates come from.

Pure functions over candidate lists, so the worker (rides/matching.py) and the seeded
benchmark (bench/matching_quality.py) run the very same decisions.

- `greedy`: each request in turn takes its nearest driver nobody took yet (window 0).
- `least_total_distance`: the requests of one window together, a minimum-cost assignment:
  as many requests as possible get a driver, and among those assignments the one with the
  least total pickup distance. Greedy is poor when drivers are scarce: the first request takes
  the driver a later one needed, and the later one drives far (issue #26 measured greedy's total
  at 1.41x the optimum when riders equal drivers).

The solver is scipy's `min_weight_full_bipartite_matching` (LAPJVsp, sparse): each request
lists only its nearest free drivers (the geo index prunes them), so the matrix has
requests x candidates entries, not requests x drivers. Each request also gets a "nobody"
column costing more than any real assignment can, so a full matching always exists, and
using one only when no real driver is left for the request maximises how many are served.
"""

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

R = TypeVar("R", bound=Hashable)
D = TypeVar("D", bound=Hashable)

# A request's candidates cost at least this much less than its "nobody" column in total over
# any batch: kilometres are below 1e4 each, batches below 1e4 requests.
_NOBODY = 1e9
# The solver reads an explicit zero as "no edge": a driver at the very pickup costs this instead.
_ZERO = 1e-9


@dataclass(frozen=True, slots=True)
class Ask(Generic[R, D]):
    """A waiting request and its free drivers in reach, as (driver, pickup distance in km)."""

    ride: R
    candidates: Sequence[tuple[D, float]]


@dataclass(frozen=True, slots=True)
class Pair(Generic[R, D]):
    ride: R
    driver: D
    distance_km: float


def greedy(asks: Sequence[Ask[R, D]]) -> list[Pair[R, D]]:
    """Each request in order takes its nearest candidate not taken by an earlier one."""
    taken: set[D] = set()
    pairs = []
    for ask in asks:
        nearest = min(((km, d) for d, km in ask.candidates if d not in taken), default=None, key=lambda c: c[0])
        if nearest is not None:
            taken.add(nearest[1])
            pairs.append(Pair(ask.ride, nearest[1], nearest[0]))
    return pairs


def least_total_distance(asks: Sequence[Ask[R, D]]) -> list[Pair[R, D]]:
    """The most requests served, and of those assignments the least total pickup distance."""
    asks = [ask for ask in asks if ask.candidates]
    if not asks:
        return []
    if len(asks) == 1:
        return greedy(asks)
    # Built with C-speed loops (dict.fromkeys, map, numpy): a batch of 500 requests has 10,000 edges.
    flat, kms = zip(*[candidate for ask in asks for candidate in ask.candidates], strict=True)
    drivers = list(dict.fromkeys(flat))
    column = {driver: col for col, driver in enumerate(drivers)}
    n, m = len(asks), len(drivers)
    rows = np.repeat(np.arange(n), [len(ask.candidates) for ask in asks])
    cols = np.fromiter(map(column.__getitem__, flat), dtype=np.int64, count=len(flat))
    costs = np.asarray(kms, dtype=np.float64)
    # The "nobody" columns, one per request, after the drivers'.
    rows = np.concatenate([rows, np.arange(n)])
    cols = np.concatenate([cols, np.arange(m, m + n)])
    costs = np.concatenate([costs + _ZERO, np.full(n, _NOBODY)])
    # A request lists a driver once (the geo index's answer): no duplicate entries to be summed.
    matrix = csr_matrix((costs, (rows, cols)), shape=(n, m + n))
    matched_rows, matched_cols = min_weight_full_bipartite_matching(matrix)
    served = matched_cols < m
    matched_rows, matched_cols = matched_rows[served], matched_cols[served]
    distances = np.asarray(matrix[matched_rows, matched_cols]).ravel() - _ZERO
    return [
        Pair(asks[row].ride, drivers[col], km)
        for row, col, km in zip(matched_rows.tolist(), matched_cols.tolist(), distances.tolist(), strict=True)
    ]
