"""Input formats. Each module turns one raw JSON row into canonical chat messages (DESIGN.md):

    messages: [{"role": "system|user|assistant|tool", "content": str, "tool_calls"?: [...]}]
    tools:    [{"type": "function", "function": {"name", "description", "parameters": JSON schema}}]

A converter raises RowError for a row it cannot use; prepare counts it, writes it to rejects.jsonl and goes on.
To add a format: write one module with a `convert(row, source) -> Chat` function and register it below.
"""

from tunemake.formats import alpaca, fields, messages, qa, sharegpt, xlam
from tunemake.formats.common import Chat, RowError

FORMATS = {
    "messages": messages.convert,
    "sharegpt": sharegpt.convert,
    "alpaca": alpaca.convert,
    "qa": qa.convert,
    "xlam": xlam.convert,
    "fields": fields.convert,
}

__all__ = ["FORMATS", "Chat", "RowError"]
