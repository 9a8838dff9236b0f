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
requests x candidates entries, not requests x drivers. It solves first without anything
else: when every request (or every driver, when drivers are fewer) can be matched, that is
the answer. Only when no such full matching exists (the solver raises ValueError) does each
request also get a "nobody" column costing more than any real assignment can, so a full
matching exists, and using one only when no real driver is left for the request maximises
how many are served. The figures are in BENCHMARKS.md ("Matching quality").
"""

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

R = TypeVar("R", bound=Hashable)
D = TypeVar("D", bound=Hashable)

# How many free drivers a batch sees of each request, nearest first: one rule for the worker
# (rides/matching.py's geo ask) and the benchmark (bench/matching_quality.py). At least
# CANDIDATES, more when the batch is small, the total held near EDGE_BUDGET (a batch of 500 x 20,
# what the solve-time target is measured at) and each request's at most MAX_CANDIDATES: with
# 20 each, a batch of 200 requests per 200 drivers stopped short of the optimum (0.743 vs 0.738
# of greedy's mean pickup, 10 seeds); at 150 per 200, 20 already reach it.
CANDIDATES = 20
MAX_CANDIDATES = 100
EDGE_BUDGET = 10_000

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


def candidates_per_request(requests: int) -> int:
    """How many of its nearest free drivers each request of a batch of `requests` lists."""
    return min(MAX_CANDIDATES, max(CANDIDATES, EDGE_BUDGET // max(requests, 1)))


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
    # The matrix in CSR form directly: a request's candidates are its row, in the order listed,
    # and a request lists a driver once (the geo index's answer), so no entry is summed.
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum([len(ask.candidates) for ask in asks], out=indptr[1:])
    cols = np.fromiter(map(column.__getitem__, flat), dtype=np.int64, count=len(flat))
    distances = np.asarray(kms, dtype=np.float64)
    costs = distances + _ZERO
    try:
        # When every request (or, with more requests than drivers, every driver) can be served,
        # the full matching is the answer without the "nobody" columns: n fewer columns and edges.
        matched_rows, matched_cols = min_weight_full_bipartite_matching(csr_matrix((costs, cols, indptr), shape=(n, m)))
    except ValueError:  # no full matching: some requests must go without, the "nobody" columns choose which
        matched_rows, matched_cols = _with_nobody_columns(costs, cols, indptr, n, m)
    # Each matched request's distance from the arrays built above (a request lists a driver once,
    # so each matched row has one edge to its column), not by the sparse matrix's fancy indexing.
    chosen = np.full(n, -1, dtype=np.int64)
    chosen[matched_rows] = matched_cols
    rows = np.repeat(np.arange(n), np.diff(indptr))
    used = cols == chosen[rows]
    return [
        Pair(asks[row].ride, drivers[col], km)
        for row, col, km in zip(rows[used].tolist(), cols[used].tolist(), distances[used].tolist(), strict=True)
    ]


def _with_nobody_columns(
    costs: np.ndarray, cols: np.ndarray, indptr: np.ndarray, n: int, m: int
) -> tuple[np.ndarray, np.ndarray]:
    """The matching when not every request can have a driver: each request also gets a column
    of its own costing more than any real assignment can, so a full matching exists, and using one
    only when no real driver is left for the request maximises how many are served."""
    counts = np.diff(indptr)
    ends = indptr[1:]
    # Each row's entries, then its "nobody" column m + row: inserted at the end of each row.
    costs = np.insert(costs, ends, _NOBODY)
    cols = np.insert(cols, ends, np.arange(m, m + n))
    indptr = np.concatenate([[0], np.cumsum(counts + 1)])
    matched_rows, matched_cols = min_weight_full_bipartite_matching(csr_matrix((costs, cols, indptr), shape=(n, m + n)))
    served = matched_cols < m
    return matched_rows[served], matched_cols[served]
