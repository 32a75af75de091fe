"""The split is deterministic, independent of row order, keeps groups whole and honours strata."""

from __future__ import annotations

import random
from collections import Counter

from tunemake.data.split import split_records

RATIOS = {"train": 0.8, "val": 0.1, "test": 0.1}


def records(n: int) -> list[dict]:
    return [
        {"id": f"s:{i}", "meta": {"source": "a" if i % 4 else "b", "line": i, "group": f"g{i // 3}"}} for i in range(n)
    ]


def ids(splits) -> dict[str, set[str]]:
    return {name: {r["id"] for r in rows} for name, rows in splits.items()}


def test_same_seed_same_split_whatever_the_row_order():
    rows = records(600)
    shuffled = rows[:]
    random.Random(1).shuffle(shuffled)
    assert ids(split_records(rows, RATIOS, 7, "source", "group")) == ids(
        split_records(shuffled, RATIOS, 7, "source", "group")
    )
    assert ids(split_records(rows, RATIOS, 7, "source", "group")) != ids(
        split_records(rows, RATIOS, 8, "source", "group")
    )


def test_groups_never_straddle_splits_and_ratios_hold():
    splits = split_records(records(600), RATIOS, 0, None, "group")
    where = {}
    for name, rows in splits.items():
        for r in rows:
            assert where.setdefault(r["meta"]["group"], name) == name
    sizes = {name: len(rows) for name, rows in splits.items()}
    assert sum(sizes.values()) == 600
    assert abs(sizes["train"] - 480) <= 15 and abs(sizes["val"] - 60) <= 15 and abs(sizes["test"] - 60) <= 15


def test_stratified_split_gives_each_split_its_share_of_each_stratum():
    splits = split_records(records(800), RATIOS, 0, "source", None)
    for name, rows in splits.items():
        share_b = Counter(r["meta"]["source"] for r in rows)["b"] / len(rows)
        assert abs(share_b - 0.25) < 0.02, (name, share_b)
