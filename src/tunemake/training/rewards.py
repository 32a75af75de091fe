"""Verifiable rewards for the reinforce step (GRPO): programs that score a sampled completion against the train row's
reference, the same checks evaluate scores held-out answers with (tunemake.evaluation.scoring).

Each reward is a function TRL's GRPOTrainer calls once per batch, by keyword: `prompts` and `completions` (texts),
then the row's columns, one entry per completion: `id`, `kind` (tunemake.data.chat.answer_kind of the reference:
tool_call, no_call or text), `reference` (the reference answer's text, calls written as the template writes them),
`reference_calls` (its calls, [{"function": {"name", "arguments"}}]) and `tools` (the function specs the row offers),
plus TRL's own (`completion_ids`, `trainer_state`, `log_extra`, `log_metric`). It returns one score per completion,
or None where it does not apply; a user's own reward (`module:function` in reinforce.rewards) has the same form and
is checked when params load (tunemake.params.reinforce.load_reward).

- tool_call, for rows whose reference calls: 1 for an exact match (evaluate's tool_calls.exact_match: the same calls,
  no more, arguments right by the BFCL-style checker); otherwise partial credit of at most 0.9: 0.2 for parseable
  <tool_call> JSON, 0.2 for the right function names, 0.2 times the share of reference calls answered by a call of
  that name with every required argument present, 0.3 times the share of calls whose arguments check out. A completion
  without a parseable call scores 0. None for rows whose reference does not call.
- no_call, for rows that offer tools and whose reference answers in words (restraint): 1 for a non-empty answer with
  no call in any form (evaluate's no_call score, which also counts a "<tool_call>" nobody can parse as a call), else 0.
  None for other rows.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from tunemake.evaluation.scoring import parse_calls, tool_scores
from tunemake.params.reinforce import REWARDS, load_reward

PARTIAL = {"json_valid": 0.2, "function_name": 0.2, "required": 0.2, "arguments": 0.3}  # sums to 0.9: below exact


def required_present(predicted: list[dict], reference_calls: list[dict], tools: list[dict] | None) -> float:
    """The share of reference calls answered by a predicted call of the same function that has every argument the
    function requires (its schema's `required`, or the reference's own arguments where the row offers no schema)."""
    schemas = {t.get("function", t)["name"]: t.get("function", t).get("parameters") or {} for t in tools or []}
    hits = 0
    for call in reference_calls:
        name = call["function"]["name"]
        needed = schemas[name].get("required", []) if name in schemas else list(call["function"]["arguments"])
        hits += any(p["name"] == name and all(arg in p["arguments"] for arg in needed) for p in predicted)
    return hits / len(reference_calls)


def tool_call_score(answer: str, reference_calls: list[dict], tools: list[dict] | None) -> float:
    """1 for an exact match; otherwise the partial credit of the module docstring (at most 0.9); 0 without a call."""
    scores = tool_scores(answer, reference_calls, tools)
    if scores["exact_match"]:
        return 1.0
    predicted = parse_calls(answer)
    if predicted is None:
        return 0.0
    parts = {**scores, "required": required_present(predicted, reference_calls, tools)}
    return round(sum(weight * parts[name] for name, weight in PARTIAL.items()), 6)


def no_call_score(answer: str) -> float:
    """1 for an answer in words with no call in it, parseable or not; 0 for a call or an empty answer."""
    return float(bool(answer.strip()) and parse_calls(answer) is None and "<tool_call>" not in answer)


def tool_call(completions: list[str], kind: list[str], reference_calls: list, tools: list, **kwargs) -> list:
    return [
        tool_call_score(answer, calls, offered) if k == "tool_call" else None
        for answer, k, calls, offered in zip(completions, kind, reference_calls, tools)
    ]


def no_call(completions: list[str], kind: list[str], **kwargs) -> list:
    return [no_call_score(answer) if k == "no_call" else None for answer, k in zip(completions, kind)]


BUILT_IN = {"tool_call": tool_call, "no_call": no_call}
assert set(BUILT_IN) == set(REWARDS)


def reward_function(spec: str) -> Callable:
    """The function reinforce.rewards names (built in, or a user's module:function), taking the step's columns as
    they are stored (reference_calls and tools as JSON text, since their schemas vary by row) decoded, and named for
    TRL's logs (rewards/NAME/mean)."""
    function = BUILT_IN.get(spec) or load_reward(spec)

    def reward(prompts, completions, **kwargs):
        for column in ("reference_calls", "tools"):
            if column in kwargs:
                kwargs[column] = [json.loads(value) for value in kwargs[column]]
        return function(prompts=prompts, completions=completions, **kwargs)

    reward.__name__ = spec if spec in BUILT_IN else spec.partition(":")[2]
    return reward
