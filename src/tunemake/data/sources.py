"""Reading source files into canonical records, for prepare (conversations) and pairs (preference pairs).

Each row goes through its format's converter and the checks every row shares (non-empty turns, the source's system
prompt, a usable turn order); a row that fails is kept as a reject with its file, line, reason, the fix and the raw
line, never silently dropped.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path
from typing import Iterator

from tunemake.data.formats import FORMATS, Pair, RowError
from tunemake.data.jsonl import ReadCounts, atomic_dir, dotted, read_lines, write_json, write_jsonl
from tunemake.errors import StepError
from tunemake.params.prepare import PrepareParams
from tunemake.params.sources import SourceParams

# Reasons that are the user's own choice, not a data defect: they never fail a strict run.
CHOSEN = {"filtered_out", "duplicate"}


def read_rows(sources: list[SourceParams], params: PrepareParams, stats: dict) -> Iterator[dict]:
    """Every source's rows in file order as they are read, so no step holds them all: canonical records, and
    rejects (the rows with a "reason"), deduplicated across sources. Each source's counts land in stats["sources"]
    once it is read. With prepare.strict a defective row stops the step once every row is read, naming them."""
    seen: dict[bytes, str] = {}  # digest of a conversation -> the id that had it first, across sources
    defects: list[dict] = []
    count = 0
    for source in sources:
        for row in read_source(source, params, seen, stats.setdefault("sources", {})):
            if row.get("reason") not in (None, *CHOSEN):
                count += 1
                defects += [row] if len(defects) < 20 else []
            yield row
    if params.strict and count:
        shown = "\n".join(f"  {r['file']}:{r['line']}: {r['reason']}: {r['detail']} -> {r['fix']}" for r in defects)
        more = f"\n  ... and {count - len(defects)} more" if count > len(defects) else ""
        raise StepError(
            f"{count} row(s) rejected and prepare.strict is true:\n{shown}{more}\n"
            "Fix these rows, or set prepare.strict: false in params.yaml to skip them (they are then listed in rejects.jsonl)."
        )


def read_sources(sources: list[SourceParams], params: PrepareParams) -> tuple[list[dict], list[dict], dict]:
    """read_rows gathered into records, rejects and counts, for data small enough to hold (preference pairs)."""
    records: list[dict] = []
    rejects: list[dict] = []
    stats: dict = {"sources": {}}
    for row in read_rows(sources, params, stats):
        (rejects if "reason" in row else records).append(row)
    return records, rejects, stats


def read_source(source: SourceParams, params: PrepareParams, seen: dict, counts: dict) -> Iterator[dict]:
    """One source's canonical records and rejects (file, line, reason, fix, raw line), in file order; its counts
    go to counts[source.label] once it is read."""
    path = Path(source.path)
    if not path.is_file():
        raise StepError(
            f"{path}: source file not found. Fix prepare.sources[].path in params.yaml or remove the source."
        )
    convert = FORMATS[source.format]
    read = ReadCounts()
    repaired: Counter = Counter()
    reasons: Counter = Counter()
    first_reject: dict | None = None
    kept = lines = 0

    for line in read_lines(path, read):
        lines += 1
        row = _read_row(line, source, str(path), convert, params.dedup, seen, repaired)
        if "reason" in row:
            reasons[row["reason"]] += 1
            first_reject = first_reject or row
        else:
            kept += 1
        yield row

    if kept == 0:
        top = ", ".join(f"{n} {r}" for r, n in reasons.most_common(3)) or "the file has no non-blank lines"
        first = (
            f"\nFirst: {path}:{first_reject['line']}: {first_reject['detail']} -> {first_reject['fix']}"
            if first_reject
            else ""
        )
        raise StepError(
            f"{path}: yielded no usable rows ({top}). Check that format: {source.format} matches the file "
            f"and that its 'where' filter can match.{first}"
        )
    counts[source.label] = {
        "file": str(path),
        "format": source.format,
        "lines": lines,
        "kept": kept,
        "rejected": dict(reasons),
        "repaired": {**{k: v for k, v in vars(read).items() if v}, **repaired},
    }


def _read_row(line, source: SourceParams, file: str, convert, dedup: bool, seen: dict, repaired: Counter) -> dict:
    """One line as a canonical record, or as a reject saying why and what to fix."""

    def reject(reason: str, detail: str, fix: str) -> dict:
        raw = line.raw.decode("utf-8", "backslashreplace").rstrip("\r\n")
        return {
            "file": file,
            "line": line.number,
            "source": source.label,
            "reason": reason,
            "detail": detail,
            "fix": fix,
            "raw": raw,
        }

    if line.problem:
        return reject(*line.problem)
    unmatched = _unmatched_filter(line.row, source.where)
    if unmatched:
        return reject("filtered_out", unmatched, "expected: this source's 'where' filter excludes the row")
    try:
        chat = convert(line.row, source)
        row_repairs: Counter = Counter()
        system = _system_for(line.row, source)
        if isinstance(chat, Pair):
            content = _normalise_pair(chat, system, row_repairs)
        else:
            content = {"messages": _normalise(chat.messages, system, row_repairs)}
    except RowError as err:
        return reject(err.reason, err.detail, err.fix)
    record_id = f"{source.label}:{line.number}"
    if dedup:
        # a digest, not the conversation itself: memory per row stays small at millions of rows
        key = hashlib.blake2b(json.dumps([content, chat.tools], sort_keys=True).encode(), digest_size=16).digest()
        if key in seen:
            return reject(
                "duplicate", f"same conversation as {seen[key]}", "remove one copy, or set prepare.dedup: false"
            )
        seen[key] = record_id
    meta = {k: v for k, v in line.row.items() if k not in chat.consumed and isinstance(v, (str, int, float, bool))}
    meta.update(source=source.label, file=file, line=line.number, format=source.format)
    record = {"id": record_id, **content, "meta": meta}
    if chat.tools:
        record["tools"] = chat.tools
    repaired.update(row_repairs)
    return record


def _unmatched_filter(row: dict, where: dict) -> str:
    for field, wanted in where.items():
        value = dotted(row, field)
        allowed = wanted if isinstance(wanted, list) else [wanted]
        if value not in allowed:
            return f"{field} is {value!r}, the filter wants {wanted!r}"
    return ""


def _system_for(row: dict, source: SourceParams) -> str | None:
    """The system prompt for a row without one: by its field's value (system_by), else the source's."""
    if source.system_by is None:
        return source.system
    value = dotted(row, source.system_by.field)
    prompt = source.system_by.prompts.get(str(value)) if value is not None else None
    if prompt is None and source.system is None:
        raise RowError(
            "no_system_prompt",
            f"{source.system_by.field} is {value!r}, which system_by.prompts does not list",
            f"add {value!r} to system_by.prompts in params.yaml, or give the source a fallback `system`",
        )
    return prompt or source.system


def _non_empty(messages: list[dict], repaired: Counter) -> list[dict]:
    kept = [m for m in messages if m["content"].strip() or m.get("tool_calls")]
    if len(kept) < len(messages):
        repaired["empty_turns_dropped"] += len(messages) - len(kept)
    return kept


def _with_system(messages: list[dict], system: str | None, repaired: Counter) -> list[dict]:
    """The source's system prompt added to a conversation that has none; a system turn must come first."""
    if any(m["role"] == "system" for m in messages[1:]):
        raise RowError(
            "misplaced_system", "a system message appears after the first turn", "put the system prompt first, once"
        )
    if system and not (messages and messages[0]["role"] == "system"):
        repaired["system_added"] += 1
        return [{"role": "system", "content": system}, *messages]
    return messages


def _normalise_pair(pair: Pair, system: str | None, repaired: Counter) -> dict:
    """A pair's prompt ends with a user (or tool) turn; both answers start with the assistant, differ and are
    non-empty."""
    prompt = _with_system(_non_empty(pair.prompt, repaired), system, repaired)
    turns = [m for m in prompt if m["role"] != "system"]
    if not turns or turns[0]["role"] != "user" or turns[-1]["role"] == "assistant":
        raise RowError(
            "bad_turn_order",
            "the prompt must start with a user turn and end before an answer",
            "end the prompt with the user's (or a tool's) turn; the answers follow it",
        )
    sides = {}
    for side in ("chosen", "rejected"):
        answer = _non_empty(getattr(pair, side), repaired)
        if not answer:
            raise RowError("empty_answer", f"the {side} answer is empty", f"give the {side} answer some text")
        if answer[0]["role"] != "assistant" or any(m["role"] == "system" for m in answer):
            raise RowError(
                "bad_turn_order",
                f"the {side} answer starts with {answer[0]['role']!r}, not 'assistant'",
                "start each answer with the assistant's turn; earlier turns belong in the prompt",
            )
        sides[side] = answer
    if sides["chosen"] == sides["rejected"]:
        raise RowError(
            "identical_answers", "chosen and rejected are the same answer", "give the pair a worse rejected answer"
        )
    return {"prompt": prompt, **sides}


def _normalise(messages: list[dict], system: str | None, repaired: Counter) -> list[dict]:
    """Shared checks for every format: drop empty turns, add the source's system prompt, enforce a usable shape."""
    kept = _with_system(_non_empty(messages, repaired), system, repaired)
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


def write_splits(out: Path, splits: dict[str, list[dict]], rejects: list[dict], stats: dict) -> None:
    """A reading step's output, atomically: <split>.jsonl per split, rejects.jsonl and stats.json."""
    with atomic_dir(out) as tmp:
        for name, rows in splits.items():
            write_jsonl(tmp / f"{name}.jsonl", rows)
        write_jsonl(tmp / "rejects.jsonl", rejects)
        write_json(tmp / "stats.json", stats)
