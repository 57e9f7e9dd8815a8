"""The centred rolling quantiles of artefact detection equal numpy's, window by window."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from processors.rr_clean import _centred_quantiles


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(0.0, 3000.0, allow_nan=False), min_size=0, max_size=300),
    half=st.integers(0, 60),
    qs=st.lists(st.floats(0.0, 1.0), min_size=1, max_size=3).map(tuple),
)
def test_each_sample_gets_the_quantiles_of_its_truncated_window(
    values: list[float], half: int, qs: tuple[float, ...]
) -> None:
    x = np.asarray(values, dtype=np.float64)
    got = _centred_quantiles(x, 2 * half + 1, qs)
    for i in range(x.size):
        expected = np.quantile(x[max(0, i - half) : i + half + 1], qs)
        for k in range(len(qs)):
            assert got[k][i] == expected[k]
