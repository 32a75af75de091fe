"""prepare: raw JSONL sources -> validated, normalised, de-duplicated train/val/test splits.

Outputs (one directory): train.jsonl, val.jsonl, test.jsonl in the canonical record format, stats.json, and
rejects.jsonl with every row that was not kept (file, line, reason, what to fix, and the raw line).
"""

from __future__ import annotations

import argparse
import json
import logging
from collections import Counter
from pathlib import Path

import numpy as np

from tunemake.errors import StepError
from tunemake.formats import FORMATS, RowError
from tunemake.jsonl import ReadCounts, atomic_dir, dotted, read_jsonl, read_lines, write_json, write_jsonl
from tunemake.params import PrepareParams, SourceParams
from tunemake.params import load as load_params
from tunemake.split import SPLITS, split_records

log = logging.getLogger(__name__)

# Reasons that are the user's own choice, not a data defect: they never fail a strict run.
CHOSEN = {"filtered_out", "duplicate"}
LENGTH_BINS = [0, 256, 512, 1024, 2048, 4096, 8192, 16384, float("inf")]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--replay", type=Path, help="the replay step's output (mixed into train, see prepare.replay)")
    parser.add_argument("--out", type=Path, required=True, help="train/val/test.jsonl, stats.json, rejects.jsonl")


def main(args: argparse.Namespace) -> None:
    run(load_params(args.params).prepare, args.out, args.replay)


def run(params: PrepareParams, out: Path, replay: Path | None = None) -> dict:
    records: list[dict] = []
    rejects: list[dict] = []
    seen: dict[str, str] = {}  # conversation -> the id that had it first, across sources
    stats: dict = {"sources": {}}
    for source in params.sources:
        kept, rejected, stats["sources"][source.label] = _read_source(source, params, seen)
        records += kept
        rejects += rejected

    defects = [r for r in rejects if r["reason"] not in CHOSEN]
    if params.strict and defects:
        shown = "\n".join(
            f"  {r['file']}:{r['line']}: {r['reason']}: {r['detail']} -> {r['fix']}" for r in defects[:20]
        )
        more = f"\n  ... and {len(defects) - 20} more" if len(defects) > 20 else ""
        raise StepError(
            f"{len(defects)} row(s) rejected and prepare.strict is true:\n{shown}{more}\n"
            "Fix these rows, or set prepare.strict: false in params.yaml to skip them (they are then listed in rejects.jsonl)."
        )

    splits = split_records(records, params.split.model_dump(), params.seed, params.stratify_by, params.group_by)
    for name in SPLITS:
        if not splits[name]:
            raise StepError(
                f"split {name!r} is empty ({len(records)} rows kept in total). Add rows, raise prepare.split.{name}, "
                + (
                    "or use fewer, larger groups than prepare.group_by makes."
                    if params.group_by
                    else "or lower the other ratios."
                )
            )

    splits["train"] += _replay_rows(replay, params, len(splits["train"]))
    lengths = [sum(len(m["content"]) for m in r["messages"]) + len(json.dumps(r.get("tools", []))) for r in records]
    counts, _ = np.histogram(lengths, bins=LENGTH_BINS)
    stats.update(
        rows={"kept": len(records), "rejected": len(rejects)},
        rejects=dict(Counter(r["reason"] for r in rejects)),
        splits={
            name: {"rows": len(rows), "by_source": dict(Counter(r["meta"]["source"] for r in rows))}
            for name, rows in splits.items()
        },
        length_chars={"bins": [str(b) for b in LENGTH_BINS], "counts": counts.tolist()},
    )
    with atomic_dir(out) as tmp:
        for name, rows in splits.items():
            write_jsonl(tmp / f"{name}.jsonl", rows)
        write_jsonl(tmp / "rejects.jsonl", rejects)
        write_json(tmp / "stats.json", stats)
    log.info(
        "prepare: kept %d rows (%s), rejected %d %s",
        len(records),
        ", ".join(f"{n} {len(splits[n])}" for n in SPLITS),
        len(rejects),
        dict(Counter(r["reason"] for r in rejects)),
    )
    return stats


def _replay_rows(replay: Path | None, params: PrepareParams, task_rows: int) -> list[dict]:
    """prepare.replay x task_rows of the base's own answers (tunemake.replay), drawn with the split's seed; train only:
    val and test measure the task."""
    wanted = round(params.replay * task_rows)
    if not wanted:
        return []
    if replay is None:
        raise StepError(f"prepare.replay is {params.replay:g} but no --replay folder was given; set prepare.replay: 0")
    rows = read_jsonl(replay / "rows.jsonl")
    if wanted > len(rows):
        log.warning(
            "prepare: prepare.replay asks for %d replay rows, the replay step kept %d; using all", wanted, len(rows)
        )
    picked = np.random.default_rng(params.seed).permutation(len(rows))[:wanted]
    return [rows[i] for i in sorted(picked)]


def _read_source(source: SourceParams, params: PrepareParams, seen: dict) -> tuple[list[dict], list[dict], dict]:
    """One source's canonical records, its rejects (file, line, reason, fix, raw line) and its counts."""
    path = Path(source.path)
    if not path.is_file():
        raise StepError(
            f"{path}: source file not found. Fix prepare.sources[].path in params.yaml or remove the source."
        )
    convert = FORMATS[source.format]
    records: list[dict] = []
    rejects: list[dict] = []
    read = ReadCounts()
    repaired: Counter = Counter()
    reasons: Counter = Counter()
    kept = lines = 0

    for line in read_lines(path, read):
        lines += 1

        def reject(reason: str, detail: str, fix: str) -> None:
            reasons[reason] += 1
            rejects.append(
                {
                    "file": str(path),
                    "line": line.number,
                    "source": source.label,
                    "reason": reason,
                    "detail": detail,
                    "fix": fix,
                    "raw": line.raw.decode("utf-8", "backslashreplace").rstrip("\r\n"),
                }
            )

        if line.problem:
            reject(*line.problem)
            continue
        unmatched = _unmatched_filter(line.row, source.where)
        if unmatched:
            reject("filtered_out", unmatched, "expected: this source's 'where' filter excludes the row")
            continue
        try:
            chat = convert(line.row, source)
            row_repairs: Counter = Counter()
            messages = _normalise(chat.messages, source.system, row_repairs)
        except RowError as err:
            reject(err.reason, err.detail, err.fix)
            continue
        record_id = f"{source.label}:{line.number}"
        if params.dedup:
            key = json.dumps([messages, chat.tools], sort_keys=True)
            if key in seen:
                reject("duplicate", f"same conversation as {seen[key]}", "remove one copy, or set prepare.dedup: false")
                continue
            seen[key] = record_id
        meta = {k: v for k, v in line.row.items() if k not in chat.consumed and isinstance(v, (str, int, float, bool))}
        meta.update(source=source.label, file=str(path), line=line.number, format=source.format)
        record = {"id": record_id, "messages": messages, "meta": meta}
        if chat.tools:
            record["tools"] = chat.tools
        records.append(record)
        repaired.update(row_repairs)
        kept += 1

    if kept == 0:
        top = ", ".join(f"{n} {r}" for r, n in reasons.most_common(3)) or "the file has no non-blank lines"
        first = (
            f"\nFirst: {path}:{rejects[0]['line']}: {rejects[0]['detail']} -> {rejects[0]['fix']}" if rejects else ""
        )
        raise StepError(
            f"{path}: yielded no usable rows ({top}). Check that format: {source.format} matches the file "
            f"and that its 'where' filter can match.{first}"
        )
    counts = {
        "file": str(path),
        "format": source.format,
        "lines": lines,
        "kept": kept,
        "rejected": dict(reasons),
        "repaired": {**{k: v for k, v in vars(read).items() if v}, **repaired},
    }
    return records, rejects, counts


def _unmatched_filter(row: dict, where: dict) -> str:
    for field, wanted in where.items():
        value = dotted(row, field)
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if value not in allowed:
            return f"{field} is {value!r}, the filter wants {wanted!r}"
    return ""


def _normalise(messages: list[dict], system: str | None, repaired: Counter) -> list[dict]:
    """Shared checks for every format: drop empty turns, add the source's system prompt, enforce a usable shape."""
    kept = []
    for message in messages:
        if message["content"].strip() or message.get("tool_calls"):
            kept.append(message)
        else:
            repaired["empty_turns_dropped"] += 1
    if any(m["role"] == "system" for m in kept[1:]):
        raise RowError(
            "misplaced_system", "a system message appears after the first turn", "put the system prompt first, once"
        )
    if system and not (kept and kept[0]["role"] == "system"):
        kept.insert(0, {"role": "system", "content": system})
        repaired["system_added"] += 1
    if not any(m["role"] == "assistant" for m in kept):
        raise RowError("missing_roles", "no non-empty assistant turn", "give the row an assistant answer to train on")
    while kept[-1]["role"] != "assistant":
        kept.pop()
        repaired["trailing_turns_trimmed"] += 1
    turns = [m for m in kept if m["role"] != "system"]
    if turns[0]["role"] != "user":
        raise RowError(
            "bad_turn_order", f"the conversation starts with {turns[0]['role']!r}, not 'user'", "start with a user turn"
        )
    return kept
