"""From per-row scores to the numbers in metrics.json: test scores with intervals, preference wins and margins, what
a later step changed pair by pair, the two engines' agreement, speed, and the regression suite's summary."""

from __future__ import annotations

import logging
import statistics

from tunemake.evaluation import degenerate, general
from tunemake.evaluation.scoring import parse_calls, text_scores, tool_scores
from tunemake.evaluation.stats import interval, paired_interval

log = logging.getLogger("tunemake")


def wins_and_margins(logps: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Per pair: 1 when the chosen answer is the likelier one, and its log-likelihood margin in nats."""
    return [float(chosen > rejected) for chosen, rejected in logps], [chosen - rejected for chosen, rejected in logps]


def preference_summary(logps: list[tuple[float, float]]) -> dict:
    """How often the chosen answer is the likelier one (points) and the mean margin in nats, with 95% intervals."""
    wins, margins = wins_and_margins(logps)
    return {
        "accuracy": round(100 * statistics.mean(wins), 1),
        "margin": round(statistics.mean(margins), 3),
        "ci95": {"accuracy": interval(wins), "margin": interval(margins, scale=1)},
        "pairs": len(logps),
    }


def preference_change(sft: list[tuple[float, float]], tuned: list[tuple[float, float]]) -> dict:
    """What alignment changed on the held-out pairs, pair by pair (paired intervals): accuracy in points, which moves
    a whole pair at a time, and the margin in nats, which shows the direction where no pair flips."""
    (sft_wins, sft_margins), (tuned_wins, tuned_margins) = wins_and_margins(sft), wins_and_margins(tuned)
    change = [t - s for t, s in zip(tuned_margins, sft_margins)]
    return {
        "accuracy": round(100 * (statistics.mean(tuned_wins) - statistics.mean(sft_wins)), 1),
        "margin": round(statistics.mean(change), 3),
        "ci95": {"accuracy": paired_interval(tuned_wins, sft_wins), "margin": interval(change, scale=1)},
        "margins_rose": sum(c > 0 for c in change),
        "pairs": len(change),
    }


def score_change(before: list[dict], after: list[dict]) -> dict:
    """What a step changed on the test rows, row by row (summarise's per-row scores): points, with paired 95%
    intervals, for tool-call exact match (rows whose reference calls) and no-call (rows none of whose tools fits)."""
    change = {}
    for name, score in (
        ("tool_calls.exact_match", lambda s: s.get("tool_calls", {}).get("exact_match")),
        ("no_call", lambda s: s.get("no_call")),
    ):
        paired = [(score(a), score(b)) for a, b in zip(after, before) if score(a) is not None]
        if paired:
            now, then = [a for a, _ in paired], [b for _, b in paired]
            change[name] = {
                "change": round(100 * (statistics.mean(now) - statistics.mean(then)), 1),
                "ci95": paired_interval(now, then),
                "rows": len(paired),
            }
    return change


def engine_check(rows: list[dict], model: dict, name: str, gguf: str) -> dict:
    """The timed rows' transformers answers against the 16-bit GGUF's, which stand for the model's: a broken
    conversion would show here (rounding to 16 bits can also flip a near tie late in a long answer)."""
    differing = [
        {"id": rows[i]["id"], "transformers": answer, "gguf": model["answers"][i]}
        for i, answer in zip(model["timed_rows"], model["timed_answers"])
        if not same_answer(answer, model["answers"][i])
    ]
    for row in differing:
        log.warning(
            "evaluate: on test row %s the %s model answers differently in transformers and in %s; its scores are "
            "%s's. transformers: %r; %s: %r",
            row["id"],
            name,
            gguf,
            gguf,
            row["transformers"],
            gguf,
            row["gguf"],
        )
    return {
        "answers_from": gguf,
        "rows": len(model["timed_rows"]),
        "equal": len(model["timed_rows"]) - len(differing),
        "differing": differing,
    }


def same_answer(one: str, other: str) -> bool:
    """The same calls, when either answer makes one; else the same text."""
    calls = parse_calls(one), parse_calls(other)
    return calls[0] == calls[1] if any(calls) else one.strip() == other.strip()


def speed(timings: list[tuple], peak: float) -> dict:
    """Means over timed rows; each timing is (prompt tokens, generated tokens, time to first token, time after it)."""
    if not timings:
        return {"peak_rss_mb": peak}
    return {
        "time_to_first_token_s": round(statistics.mean(t[2] for t in timings), 3),
        "prompt_tokens_per_second": round(sum(t[0] for t in timings) / sum(t[2] for t in timings), 1),
        "generation_tokens_per_second": round(
            sum(max(t[1] - 1, 0) for t in timings) / max(sum(t[3] for t in timings), 1e-9), 1
        ),
        "seconds_per_answer": round(statistics.mean(t[2] + t[3] for t in timings), 3),
        "timed_rows": len(timings),
        "peak_rss_mb": peak,
    }


def summarise(
    rows: list[dict], answers: list[str], stopped: list[bool], calls: list[str] | None = None
) -> tuple[dict, list[dict]]:
    """Scores per row and their means with 95% intervals. Tool calls are read from each answer's text, or from
    `calls` where given (a server's parsed calls, so a call it failed to parse does not count). A row that offers
    tools none of which fits (the reference answers in words) scores `no_call`: 1 when the answer calls nothing,
    not even in a form nobody parses."""
    per_row, tool_rows = [], []
    for i, (row, answer, ended) in enumerate(zip(rows, answers, stopped)):
        scores = text_scores(answer, row["reference"])
        scores["degenerate"] = degenerate.reasons(answer, ended)
        called = answer if calls is None else calls[i]
        if row["reference_calls"]:
            scores["tool_calls"] = tool_scores(called, row["reference_calls"], row["tools"])
            tool_rows.append(scores["tool_calls"])
        elif row["tools"]:
            scores["no_call"] = float(not parse_calls(called) and "<tool_call>" not in answer)
        per_row.append(scores)
    columns = {
        "exact_match": [s["exact_match"] for s in per_row],
        "rouge_l": [s["rouge_l"] for s in per_row],
        "degenerate_rate": [float(bool(s["degenerate"])) for s in per_row],
    }
    columns.update({f"tool_calls.{k}": [t[k] for t in tool_rows] for k in (tool_rows[0] if tool_rows else [])})
    if restraint := [s["no_call"] for s in per_row if "no_call" in s]:
        columns["no_call"] = restraint
    points = {name: round(100 * statistics.mean(values), 1) for name, values in columns.items()}
    summary = {
        name: points[name] for name in ("exact_match", "rouge_l", "degenerate_rate", "no_call") if name in points
    }
    if tool_rows:
        summary["tool_calls"] = {k: points[f"tool_calls.{k}"] for k in tool_rows[0]}
    summary["ci95"] = {name: interval(values) for name, values in columns.items()}  # bootstrap over rows, points
    return summary, per_row


def general_scores(suite: list[dict], answers: list[str], stopped: list[bool]) -> list[dict]:
    """Per conversation: degenerate reasons (no_stop aside: the suite's short cap cuts fair answers too, so an
    unfinished answer is counted on its own), whether it ended its turn, and the checkable score."""
    return [
        {
            "degenerate": degenerate.reasons(answer),
            "unfinished": not ended,
            "checkable": general.checkable(answer, row["answer"]),
        }
        for row, answer, ended in zip(suite, answers, stopped)
    ]


ENDS_TURNS = 0.25  # a base that ended its turn on fewer of the suite's answers never learned to: a pretrained one


def sound_answers(base: list[dict]) -> list[bool]:
    """Which conversations the base answered well (its general_scores rows): not degenerate, from a base that ends
    its turns. An instruct base's answer still going at the suite's short cap is a fair answer cut short (SmolLM2:
    29 of 66), so it counts; a base that ended its turn on under ENDS_TURNS of them rambles on everywhere, as a
    pretrained one does, and the detector misses some rambling: then none counts."""
    ends_turns = sum(not s["unfinished"] for s in base) >= ENDS_TURNS * len(base)
    return [ends_turns and not s["degenerate"] for s in base]


def drift_summary(base: list[float], tuned: list[float], sound: list[bool]) -> dict:
    """The tuned model's loss on the base's own general answers minus the base's, nats per token (mean over
    conversations), with its paired 95% interval: over every conversation (`drift`), and over those the base
    answered soundly (`drift_sound`, None when there are none): moving away from a broken answer is no harm."""
    kept = [i for i, ok in enumerate(sound) if ok]
    base_kept, tuned_kept = [base[i] for i in kept], [tuned[i] for i in kept]
    return {
        "drift": round(statistics.mean(tuned) - statistics.mean(base), 4),
        "drift_sound": round(statistics.mean(tuned_kept) - statistics.mean(base_kept), 4) if kept else None,
        "ci95": {
            "drift": paired_interval(tuned, base, scale=1),
            "drift_sound": paired_interval(tuned_kept, base_kept, scale=1),
        },
        "conversations": len(base),
        "sound_conversations": len(kept),
    }


def general_summary(suite: list[dict], scores: list[dict]) -> dict:
    """Degenerate, unfinished and checkable rates in points, with 95% intervals over conversations."""
    columns = {
        "degenerate_rate": [float(bool(s["degenerate"])) for s in scores],
        "unfinished_rate": [float(s["unfinished"]) for s in scores],
        "checkable": [s["checkable"] for s in scores if s["checkable"] is not None],
    }
    summary = {name: round(100 * statistics.mean(v), 1) if v else None for name, v in columns.items()}
    summary["ci95"] = {name: interval(v) for name, v in columns.items()}
    summary["degenerate_by_system"] = {
        system: round(
            100 * statistics.mean(bool(s["degenerate"]) for r, s in zip(suite, scores) if r["system"] == system), 1
        )
        for system in dict.fromkeys(r["system"] for r in suite)
    }
    summary["conversations"] = len(scores)
    return summary
