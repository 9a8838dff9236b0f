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
Solving without them first (when a full matching of the requests exists) was measured and not
kept: ~20% faster at 500 requests x 1,000 drivers, 4-8x slower at 200 requests for 200
drivers (LAPJVsp on a tight square problem: 13-30 ms median, up to 60 ms). The figures are in
BENCHMARKS.md ("Matching quality").
"""

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching

R = TypeVar("R", bound=Hashable)
D = TypeVar("D", bound=Hashable)

# How many free drivers each request lists, nearest first: the worker's geo ask (rides/matching.py)
# and the benchmark (bench/matching_quality.py) read this one figure. More when the batch is
# small (min(100, max(20, 10,000 / requests)), the edges held near a 500 x 20 batch) was
# measured and not kept: the same share assigned and mean pickup in the simulated city at every
# demand, 0.740 instead of 0.743 of greedy's mean pickup in one window of 200 requests per 200
# drivers (20 already reach the optimum at 150 per 200), for 1.5-3x the candidate gathering's
# time per batch (25 pickups: 29 → 63 ms, 100 pickups: 70 → 205 ms, 1,000 drivers near).
CANDIDATES = 20

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
    # The matrix in CSR form directly: a request's candidates are its row, in the order listed
    # (a request lists a driver once, the geo index's answer, so no entry is summed), then its
    # "nobody" column m + row.
    counts = np.fromiter(map(len, (ask.candidates for ask in asks)), dtype=np.int64, count=n)
    ends = np.cumsum(counts)
    cols = np.fromiter(map(column.__getitem__, flat), dtype=np.int64, count=len(flat))
    distances = np.asarray(kms, dtype=np.float64)
    matrix = csr_matrix(
        (
            np.insert(distances + _ZERO, ends, _NOBODY),
            np.insert(cols, ends, np.arange(m, m + n)),
            np.concatenate([[0], ends + np.arange(1, n + 1)]),
        ),
        shape=(n, m + n),
    )
    matched_rows, matched_cols = min_weight_full_bipartite_matching(matrix)
    # Each matched request's distance from the arrays built above (each served row has one entry
    # in its driver's column), not read back by the sparse matrix's fancy indexing.
    chosen = np.full(n, -1, dtype=np.int64)
    served = matched_cols < m
    chosen[matched_rows[served]] = matched_cols[served]
    rows = np.repeat(np.arange(n), counts)
    used = cols == chosen[rows]
    return [
        Pair(asks[row].ride, drivers[col], km)
        for row, col, km in zip(rows[used].tolist(), cols[used].tolist(), distances[used].tolist(), strict=True)
    ]
