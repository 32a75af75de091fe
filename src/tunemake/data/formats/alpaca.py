"""Alpaca: {"instruction", "input"?, "output"}; a non-empty input is appended to the instruction."""

from __future__ import annotations

from tunemake.data.formats.common import Chat, text_field


def convert(row: dict, source) -> Chat:
    instruction = text_field(row, "instruction")
    extra = text_field(row, "input", required=False)
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    answer = text_field(row, "output")
    return Chat(
        [{"role": "user", "content": prompt}, {"role": "assistant", "content": answer}],
        consumed=("instruction", "input", "output"),
    )
