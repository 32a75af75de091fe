"""General prompts: what a fine-tune must not break, and what replay trains on.

Two bundled sets in tunemake/prompts/, written for the project and never overlapping (tests/test_general.py):
general.jsonl is the regression suite (how-to, facts, arithmetic, short writing, translation, lists, advice,
conversation, refusal-worthy requests); replay.jsonl holds the prompts whose base-model answers replay mixes into
training. Users add their own file of prompts that must keep working (`suite.prompts`). Each line is
{"prompt": "...", "kind": "...", "answer": ["...", ...]}; `answer` lists accepted answers for a checkable prompt.

Each prompt is asked under several system turns (SYSTEMS), since a narrow fine-tune breaks first in the contexts
its training rows never had: the template's own behaviour with no system turn (SmolLM2's inserts its default system
prompt), an empty system turn, and an unrelated one.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from tunemake.errors import StepError

PROMPTS = Path(__file__).parents[1] / "prompts"
SYSTEMS = {
    "template": None,  # no system turn: whatever the chat template does then
    "empty": "",
    "unrelated": "You are a friendly assistant for a small bookshop. Be warm and concise.",
}


class Prompt(BaseModel):
    model_config = ConfigDict(extra="forbid")
    prompt: str = Field(min_length=1)
    kind: str = "user"
    answer: list[str] = Field(default_factory=list, description="accepted answers; any one, as a whole word, passes")


def load(path: Path) -> list[Prompt]:
    """The prompts of a JSONL file; a bad line is an error that names the file, the line and the fix."""
    prompts = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            prompts.append(Prompt.model_validate(json.loads(line)))
        except (json.JSONDecodeError, ValidationError) as err:
            detail = (
                err.msg
                if isinstance(err, json.JSONDecodeError)
                else "; ".join(f"{'.'.join(map(str, e['loc'])) or 'line'}: {e['msg']}" for e in err.errors())
            )
            raise StepError(
                f"{path}:{number}: not a prompt ({detail}). Each line must be a JSON object like "
                '{"prompt": "What is 2 plus 2?", "kind": "arithmetic", "answer": ["4", "four"]} '
                "(kind and answer optional)"
            ) from None
    if not prompts:
        raise StepError(f"{path}: no prompts; add one JSON object per line, or remove the file from params.yaml")
    return prompts


def spread(count: int, wanted: int | None) -> list[int]:
    """Evenly spaced indices: a subset with the same mix (of sources, kinds, lengths) as the whole."""
    n = min(wanted or count, count)
    return sorted({round(i * (count - 1) / max(n - 1, 1)) for i in range(n)})


def conversations(
    prompts: list[Prompt], systems: list[str], numbers: list[int] | None = None, every_system: bool = True
) -> list[dict]:
    """Each prompt under every system variant, or (every_system false) under one variant in turn; each with an id
    that says which: the prompt's number in its file, from 0, and the system variant."""
    out = []
    for index, prompt in zip(numbers or range(len(prompts)), prompts):
        for name in systems if every_system else [systems[index % len(systems)]]:
            system = SYSTEMS[name]
            messages = [{"role": "user", "content": prompt.prompt}]
            if system is not None:
                messages.insert(0, {"role": "system", "content": system})
            out.append({"id": f"{index}:{name}", "system": name, "messages": messages, **prompt.model_dump()})
    return out


def checkable(answer: str, accepted: list[str]) -> float | None:
    """1.0 if the answer contains an accepted answer as a whole word (case-insensitive), 0.0 if not; None when the
    prompt has no checkable answer."""
    if not accepted:
        return None
    return float(any(re.search(rf"(?<!\w){re.escape(a)}(?!\w)", answer, re.IGNORECASE) for a in accepted))
