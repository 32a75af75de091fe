"""JSON and JSONL: reading raw lines as they come from the wild, dotted paths into records, atomic outputs."""

from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator


@dataclass
class Line:
    number: int  # 1-based, as editors show it
    raw: bytes
    row: Any = None  # the parsed JSON value, when `problem` is None
    problem: tuple[str, str, str] | None = None  # (reason, detail, fix)


@dataclass
class ReadCounts:
    """Harmless irregularities that are repaired, not rejected; counted so nothing happens unseen."""

    bom_stripped: int = 0
    crlf_lines: int = 0
    blank_lines: int = 0


def read_lines(path: Path, counts: ReadCounts) -> Iterator[Line]:
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
                counts.bom_stripped += 1
            if raw.endswith(b"\r\n"):
                counts.crlf_lines += 1
            if not raw.strip():
                counts.blank_lines += 1
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                yield Line(
                    number,
                    raw,
                    problem=(
                        "not_utf8",
                        f"byte 0x{raw[err.start]:02x} at column {err.start + 1} is not UTF-8",
                        "re-encode the file as UTF-8 (for example: iconv -f latin1 -t utf-8)",
                    ),
                )
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError as err:
                yield Line(
                    number,
                    raw,
                    problem=(
                        "invalid_json",
                        f"{err.msg} at column {err.colno}",
                        "make each line one complete JSON object (JSONL has no multi-line records)",
                    ),
                )
                continue
            if not isinstance(row, dict):
                yield Line(
                    number,
                    raw,
                    problem=(
                        "not_an_object",
                        f"the line is a JSON {type(row).__name__}, not an object",
                        "wrap the record in a JSON object",
                    ),
                )
                continue
            yield Line(number, raw, row=row)


def dotted(row: dict, path: str) -> Any:
    """row['a']['b'] for 'a.b'; None when any part is missing."""
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def write_jsonl(path: Path, rows) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")


@contextmanager
def atomic_dir(out: Path) -> Iterator[Path]:
    """Yield a scratch directory that becomes `out` only if the block succeeds, so a killed or failed step never
    leaves a half-written output that a later run would take for finished."""
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
