"""How uncertain a held-out score is: 95% bootstrap intervals over test rows, and paired ones for comparisons.

With 32 tool-call rows one row moves a score by 3.1 points, so every score and every difference the gate judges
carries an interval. Rows are resampled with scipy.stats.bootstrap (percentile method: BCa is undefined for the
all-equal 0/1 columns that small test splits often give), seeded so that a rerun gives the same numbers. A
comparison of two models on the same rows resamples the rows' differences (a paired bootstrap), which is far
tighter than comparing two separate intervals when the models agree on most rows.
"""

from __future__ import annotations

RESAMPLES = 2000
SEED = 0


def interval(values: list[float], scale: float = 100) -> list[float] | None:
    """The 95% interval of the mean of per-row values, times `scale` (values in 0..1, or their differences, give
    points); None below 2 rows."""
    import numpy as np
    from scipy.stats import bootstrap

    data = np.asarray(values, dtype=float)
    digits = 1 if scale == 100 else 3
    if len(data) < 2:
        return None
    if np.all(data == data[0]):  # every resample has the same mean
        return [round(scale * float(data[0]), digits)] * 2
    result = bootstrap((data,), np.mean, n_resamples=RESAMPLES, method="percentile", rng=np.random.default_rng(SEED))
    return [
        round(scale * float(end), digits) for end in (result.confidence_interval.low, result.confidence_interval.high)
    ]


def paired_interval(a: list[float], b: list[float], scale: float = 100) -> list[float] | None:
    """The 95% interval of mean(a) - mean(b), times `scale`, for two models scored on the same rows."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same rows: {len(a)} against {len(b)}")
    return interval([x - y for x, y in zip(a, b)], scale)
