"""Input formats. Each module turns one raw JSON row into canonical chat messages (DESIGN.md):

    messages: [{"role": "system|user|assistant|tool", "content": str, "tool_calls"?: [...]}]
    tools:    [{"type": "function", "function": {"name", "description", "parameters": JSON schema}}]

A converter raises RowError for a row it cannot use; prepare counts it, writes it to rejects.jsonl and goes on.
To add a format: write one module here with a `convert(row, source) -> Chat` (or `Pair`, preference) function; its file name is the name
params.yaml uses (tunemake.registry).
"""

from importlib import import_module

from tunemake.data.formats.common import Chat, Pair, RowError
from tunemake.registry import names

FORMATS = {name: import_module(f"tunemake.data.formats.{name}").convert for name in names("data.formats")}

__all__ = ["FORMATS", "Chat", "Pair", "RowError"]
