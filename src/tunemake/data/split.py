"""Deterministic train/val/test split, optionally stratified and grouped.

Hand-written rather than taken from scikit-learn, which has no three-way split that is grouped and stratified at
once. Groups are ordered by a seeded hash of their key, not by file order, so a row's split does not move when
rows are reordered, and rows sharing a group key never straddle splits.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict

SPLITS = ("train", "val", "test")


def split_key(record: dict, stratify_by: str | None, group_by: str | None) -> tuple[str, str]:
    """What the split needs of a record: its group (itself when ungrouped) and its stratum."""
    group = record["meta"].get(group_by) if group_by else None
    return (
        str(group) if group is not None else f"row:{record['id']}",
        str(record["meta"].get(stratify_by)) if stratify_by else "",
    )


def assign(keys: list[tuple[str, str]], ratios: dict[str, float], seed: int) -> list[str]:
    """The split of each (group, stratum) key, in order; only the keys are held, never the rows."""
    groups: dict[str, list[int]] = defaultdict(list)
    for i, (group, _) in enumerate(keys):
        groups[group].append(i)

    strata: dict[str, list[str]] = defaultdict(list)
    for group, members in groups.items():
        # a group spanning strata goes by its most common value (ties by value), never by row order
        values = Counter(keys[i][1] for i in members)
        strata[min(values, key=lambda v: (-values[v], v))].append(group)

    bounds = [ratios["train"], ratios["train"] + ratios["val"]]
    out = [""] * len(keys)
    for names in strata.values():
        names.sort(key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
        total = sum(len(groups[k]) for k in names)
        seen = 0
        for name in names:
            size = len(groups[name])
            midpoint = (seen + size / 2) / total
            split = "train" if midpoint < bounds[0] else "val" if midpoint < bounds[1] else "test"
            for i in groups[name]:
                out[i] = split
            seen += size
    return out


def split_records(
    records: list[dict], ratios: dict[str, float], seed: int, stratify_by: str | None, group_by: str | None
) -> dict[str, list[dict]]:
    """The records themselves split, each split in (source, line) order."""
    names = assign([split_key(r, stratify_by, group_by) for r in records], ratios, seed)
    out: dict[str, list[dict]] = {name: [] for name in SPLITS}
    for record, name in zip(records, names):
        out[name].append(record)
    for rows in out.values():
        rows.sort(key=lambda r: (r["meta"]["source"], r["meta"]["line"]))
    return out
