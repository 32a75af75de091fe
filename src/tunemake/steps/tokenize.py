"""tokenize: canonical splits -> a `datasets` Arrow DatasetDict with labels only on assistant tokens.

Each conversation is rendered once with the base model's chat template (once per assistant turn where the
template rewrites earlier turns: tunemake.data.chat.Renderer.sequences) and tokenized with character offsets; tokens
inside assistant turns (end-of-turn token included) keep their id as label, all others get -100, so the loss never
trains on prompts, system text or tool specs. Rows longer than tokenize.max_length follow
tokenize.overlong: drop, truncate (rows left with no trainable token are dropped) or error. All counted.

Rows stream from the JSONL into Arrow files in batches (datasets.map), so memory does not grow with the data, on
every core this process may use (one worker process per core for large splits); the stats are read back from the
Arrow columns. Row order is kept.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np

from tunemake.data.chat import Renderer, answer_kind, fast_tokenizer
from tunemake.data.jsonl import atomic_dir, write_json
from tunemake.data.split import SPLITS
from tunemake.errors import StepError
from tunemake.params import load as load_params
from tunemake.params.tokenize import TokenizeParams
from tunemake.runtime import threads
from tunemake.training.loss import IGNORE

log = logging.getLogger(__name__)

LENGTH_BINS = [0, 64, 128, 256, 512, 1024, 2048, 4096, 8192, float("inf")]
BATCH = 256  # rows per tokenizer call and per Arrow write
ROWS_PER_PROCESS = 2000  # a worker process pays for itself from about this many rows


COLUMNS = ("id", "input_ids", "labels", "fate", "kept", "length", "trainable", "kind")
DTYPES = {"input_ids": np.int32, "labels": np.int64}  # as _features() declares them


def _features():
    from datasets import Features, Sequence, Value

    return Features(
        {
            "id": Value("string"),
            "input_ids": Sequence(Value("int32")),
            "labels": Sequence(Value("int64")),  # IGNORE and token ids, as the collator expects
            # turn_text, overlong, truncated, dropped_overlong, dropped_no_trainable_tokens
            "fate": Sequence(Value("string")),
            "kept": Value("bool"),
            "length": Value("int64"),
            "trainable": Value("int64"),
            "kind": Value("string"),  # chat.answer_kind: counted in the stats, not kept in the dataset
        }
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base", type=Path, required=True, help="the base step's output (tokenizer and template)")
    parser.add_argument("--data", type=Path, required=True, help="the prepare step's output")
    parser.add_argument("--out", type=Path, required=True)


def main(args: argparse.Namespace) -> None:
    run(load_params(args.params, args.set, tokenize=TokenizeParams).tokenize, args.base, args.data, args.out)


def run(params: TokenizeParams, base: Path, data: Path, out: Path) -> dict:
    from datasets import DatasetDict

    renderer = Renderer(fast_tokenizer(base))
    stats: dict = {
        "max_length": params.max_length,
        "overlong": params.overlong,
        "tool_format": "tunemake's extension of the model's template (<tool_call> JSON, see tunemake.data.tool_template)"
        if renderer.extended
        else "the model's own template",
        "training_template": renderer.training_template,
        "system_turn": "folded into the first user turn (the template has no system role)"
        if renderer.fold_system
        else "the template's own",
        "splits": {},
    }
    with atomic_dir(out) as tmp:
        cache = tmp / "cache"  # datasets' working Arrow files, inside the step's own output until it is done
        splits = {}
        for name in SPLITS:
            splits[name], stats["splits"][name] = tokenize_split(renderer, data / f"{name}.jsonl", params, cache)
            if stats["splits"][name]["trainable_tokens"] == 0:
                raise StepError(
                    f"split {name!r} has no trainable (assistant) tokens after tokenizing "
                    f"({stats['splits'][name]['rows']} rows kept, {stats['splits'][name]}). Check that rows have "
                    "assistant answers and that tokenize.max_length leaves room for them; inspect a row with: "
                    f"tunemake show-tokens --data <tokenized dir> --split {name}"
                )
        DatasetDict(splits).save_to_disk(str(tmp / "dataset"))
        splits.clear()  # release the cache's memory maps before deleting it
        shutil.rmtree(cache)
        write_json(tmp / "token_stats.json", stats)
    summary = ", ".join(
        f"{n} {s['rows']} rows/{s['tokens']} tok ({s['trainable_fraction']:.0%} trained)"
        for n, s in stats["splits"].items()
    )
    log.info("tokenize: %s; tools: %s", summary, stats["tool_format"])
    return stats


def encode(renderer: Renderer, record: dict) -> list[tuple[list[int], list[int]]]:
    return [(ids.tolist(), labels.tolist()) for ids, labels in encode_batch(renderer, [record])[0]]


def encode_batch(renderer: Renderer, records: list[dict], path: Path | None = None) -> list[list[tuple]]:
    """Each record's texts (one, or one per assistant turn: Renderer.sequences) as token id and label arrays: the
    token's id inside an assistant span, IGNORE elsewhere."""
    rendered = []
    for record in records:
        try:
            rendered.append(renderer.sequences(*renderer.prepare(record["messages"], record.get("tools", []))))
        except ValueError as err:
            raise StepError(f"{path or 'split'} row {record['id']}: {err}") from None
    # One call for the batch: the Rust tokenizer is many times faster than a Python loop over rows or tokens.
    texts = [text for sequences in rendered for text, _ in sequences]
    encodings = iter(renderer.tokenizer._tokenizer.encode_batch(texts, add_special_tokens=False))
    # zip reads the sequences first: reading the shared iterator first would lose one encoding per record
    out = []
    for sequences in rendered:
        out.append([])
        for (_, spans), encoding in zip(sequences, encodings):
            ids = np.asarray(encoding.ids, dtype=np.int32)
            out[-1].append((ids, labels(encoding, ids, spans)))
    return out


def labels(encoding, ids: np.ndarray, spans: list[tuple[int, int]]) -> np.ndarray:
    """A token is trained when it starts inside an assistant span: each span's first and last token are found by
    asking the tokenizer where two characters fall, not by walking every token's offsets in Python."""
    trained = np.zeros(len(ids), dtype=bool)
    for lo, hi in spans:
        first, last = encoding.char_to_token(lo), encoding.char_to_token(hi - 1)
        if first is None or last is None:  # a character no token covers: fall back to every token's start
            starts = np.asarray(encoding.offsets, dtype=np.int64).reshape(-1, 2)[:, 0]
            trained |= (starts >= lo) & (starts < hi)
            continue
        if encoding.token_to_chars(first)[0] < lo:  # a token that starts before the span belongs to the prompt
            first += 1
        trained[first : last + 1] = True
    return np.where(trained, ids, IGNORE).astype(np.int64)


def _encode_lines(batch: dict, renderer: Renderer, params: TokenizeParams, path: Path):
    """datasets.map over a batch of JSONL lines: the kept rows' columns, and each row's fate for the stats, as an
    Arrow table built from the token arrays (converting Python lists of ints cost as much as tokenizing)."""
    import pyarrow as pa

    records = [json.loads(line) for line in batch["text"]]
    columns: dict[str, list] = {name: [] for name in COLUMNS}
    for record, sequences in zip(records, encode_batch(renderer, records, path)):
        for turn, (ids, labels) in enumerate(sequences):
            _add_row(
                columns,
                record,
                f"{record['id']}#{turn + 1}" if len(sequences) > 1 else record["id"],
                ids,
                labels,
                params,
            )
    schema = _features().arrow_schema
    arrays = {name: pa.array(columns[name], type=schema.field(name).type) for name in COLUMNS if name not in DTYPES}
    for name, dtype in DTYPES.items():
        offsets = np.cumsum([0, *map(len, columns[name])], dtype=np.int32)
        arrays[name] = pa.ListArray.from_arrays(offsets, np.concatenate([np.zeros(0, dtype), *columns[name]]))
    return pa.table([arrays[name] for name in COLUMNS], schema=schema)


def _add_row(columns: dict, record: dict, row_id: str, ids, labels, params: TokenizeParams):
    """One text's columns; a row of one text per assistant turn has ids id#1, id#2... (fate turn_text)."""
    fate = ["turn_text"] if row_id != record["id"] else []
    if len(ids) > params.max_length:
        fate.append("overlong")
        if params.overlong == "error":
            raise StepError(
                f"row {record['id']} ({record['meta']['file']}:{record['meta']['line']}) has {len(ids)} tokens, "
                f"over tokenize.max_length={params.max_length}. Raise max_length or set tokenize.overlong to drop "
                "or truncate."
            )
        if params.overlong == "drop":
            fate.append("dropped_overlong")
        else:
            ids, labels = ids[: params.max_length], labels[: params.max_length]
            fate.append("truncated")
    trainable = int(np.count_nonzero(labels != IGNORE))
    if "dropped_overlong" not in fate and not trainable:
        fate.append("dropped_no_trainable_tokens")
    kept = not any(f.startswith("dropped") for f in fate)
    values = (row_id, ids, labels, fate, kept, len(ids), trainable, answer_kind(record))
    for name, value in zip(COLUMNS, values):
        columns[name].append(value)


def tokenize_split(renderer: Renderer, path: Path, params: TokenizeParams, cache: Path):
    """The split as an Arrow dataset (id, input_ids, labels) and its stats, overlong and untrainable rows counted."""
    from datasets import Dataset

    lines = Dataset.from_text(str(path), cache_dir=str(cache), keep_linebreaks=False)
    lines = lines.filter(lambda text: bool(text.strip()), input_columns="text", new_fingerprint=f"{path.stem}-lines")
    encoded = lines.map(
        _encode_lines,
        fn_kwargs={"renderer": renderer, "params": params, "path": path},
        batched=True,
        batch_size=BATCH,
        num_proc=processes if (processes := min(threads(), len(lines) // ROWS_PER_PROCESS)) > 1 else None,
        remove_columns=["text"],
        features=_features(),
        new_fingerprint=f"{path.stem}-encoded",  # not a hash of the tokenizer: the cache lives only for this run
        desc=f"tokenize {path.stem}",
    )
    kept = encoded.filter(lambda kept: kept, input_columns="kept", batched=True, new_fingerprint=f"{path.stem}-kept")
    return kept.select_columns(["id", "input_ids", "labels"]), split_stats(encoded)


def split_stats(encoded) -> dict:
    """Rows, tokens, trainable tokens, the length histogram and each row's fate, read from the small columns."""
    import pyarrow.compute as pc

    kept = encoded.with_format("numpy", columns=["kept", "length", "trainable", "kind"])[:]
    fates = pc.list_flatten(encoded.data.column("fate"))
    lengths = kept["length"][kept["kept"]]
    tokens, trainable = int(lengths.sum()), int(kept["trainable"][kept["kept"]].sum())
    histogram, _ = np.histogram(lengths, bins=LENGTH_BINS)
    return {
        "rows": len(lengths),
        "tokens": tokens,
        "trainable_tokens": trainable,
        "trainable_fraction": round(trainable / tokens, 4) if tokens else 0.0,
        "max_tokens": int(lengths.max(initial=0)),
        "kinds": dict(sorted(Counter(kept["kind"][kept["kept"]].tolist()).items())),  # tool_call, no_call, text
        "length_tokens": {"bins": [str(b) for b in LENGTH_BINS], "counts": histogram.tolist()},
        **{row["values"]: row["counts"] for row in pc.value_counts(fates).to_pylist()},
    }
