"""Deterministic train/val/test split, optionally stratified and grouped.

Hand-written rather than taken from scikit-learn, which has no three-way split that is grouped and stratified at
once. Groups are ordered by a seeded hash of their key, not by file order, so a row's split does not move when
rows are reordered, and rows sharing a group key never straddle splits.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict

SPLITS = ("train", "val", "test")


def split_records(
    records: list[dict], ratios: dict[str, float], seed: int, stratify_by: str | None, group_by: str | None
) -> dict[str, list[dict]]:
    groups: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        key = record["meta"].get(group_by) if group_by else None
        groups[str(key) if key is not None else f"row:{record['id']}"].append(record)

    strata: dict[str, list[str]] = defaultdict(list)
    for key, members in groups.items():
        # a group spanning strata goes by its most common value (ties by value), never by row order
        values = Counter(str(m["meta"].get(stratify_by)) for m in members) if stratify_by else Counter([""])
        strata[min(values, key=lambda v: (-values[v], v))].append(key)

    bounds = [ratios["train"], ratios["train"] + ratios["val"]]
    out: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for keys in strata.values():
        keys.sort(key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
        total = sum(len(groups[k]) for k in keys)
        seen = 0
        for key in keys:
            size = len(groups[key])
            midpoint = (seen + size / 2) / total
            split = "train" if midpoint < bounds[0] else "val" if midpoint < bounds[1] else "test"
            out[split].extend(groups[key])
            seen += size
    for rows in out.values():
        rows.sort(key=lambda r: (r["meta"]["source"], r["meta"]["line"]))
    return out
