"""The deploy / iterate / abort decision, with intervals, and its enforcement."""

from __future__ import annotations

import json

import pytest

from tunemake.errors import StepError
from tunemake.evaluation.stats import interval
from tunemake.evaluation.summaries import drift_summary, sound_answers
from tunemake.params.gate import GateParams
from tunemake.steps import gate

SIZES = {"shipped": "Q4_K_M", "unquantized": "F16", "order": ["F16", "Q4_K_M"], "files": {"F16": {}, "Q4_K_M": {}}}
ROWS = 32  # the default test split's tool-call rows: one row is 3.1 points
MODELS = ("base", "tuned", "gguf-F16", "gguf-Q4_K_M")


GENERAL = 60  # general conversations


def general_evaluation(
    broken_base: int, broken_quant: int, drift: float, unfinished_base: int = 0, far: float | None = None
) -> tuple[dict, list[dict]]:
    """Each model's `general` summary and general_samples.jsonl: the first N conversations degenerate, and the base's
    last `unfinished_base` answers still going at the cap; every model gets the 20 checkable ones right; the tuned
    model's per-conversation drift is `drift` give or take 0.05, and `far` on the base's unsound answers when given."""
    broken = {"base": broken_base, "tuned": broken_quant, "gguf-F16": broken_quant, "gguf-Q4_K_M": broken_quant}
    samples = [
        {
            "scores": {
                m: {
                    "degenerate": ["loop"] if i < broken[m] else [],
                    "unfinished": m == "base" and i >= GENERAL - unfinished_base,
                    "checkable": 1.0 if i < 20 else None,
                }
                for m in MODELS
            }
        }
        for i in range(GENERAL)
    ]
    sound = sound_answers([s["scores"]["base"] for s in samples])
    drifts = [(drift if ok or far is None else far) + (0.05 if i % 2 else -0.05) for i, ok in enumerate(sound)]
    summaries = {
        m: {
            "degenerate_rate": round(100 * broken[m] / GENERAL, 1),
            "unfinished_rate": round(100 * unfinished_base / GENERAL, 1) if m == "base" else 0.0,
            "checkable": 100.0,
        }
        for m in MODELS
    }
    summaries["tuned"] = drift_summary([2.0] * GENERAL, [2.0 + d for d in drifts], sound)  # as evaluate
    return summaries, samples


def evaluation(
    base: int, tuned: int, f16: int, quant: int, broken=(1, 1), drift: float = 0.05, **suite
) -> tuple[dict, list[dict], list[dict]]:
    """metrics.json, samples.jsonl and general_samples.jsonl of an evaluation where each model gets its first N rows
    right (so the quant's right rows are a subset of F16's, as when quantization loses some)."""
    right = dict(zip(MODELS, (base, tuned, f16, quant)))
    summaries, general = general_evaluation(*broken, drift, **suite)
    samples = [
        {"scores": {m: {"tool_calls": {"exact_match": float(i < right[m])}} for m in MODELS}} for i in range(ROWS)
    ]
    speed = {"seconds_per_answer": 1.5, "peak_rss_mb": 700.0}
    metrics = {"models": {}}
    for m in MODELS:
        column = [s["scores"][m]["tool_calls"]["exact_match"] for s in samples]
        metrics["models"][m] = {
            "tool_calls": {"exact_match": round(100 * right[m] / ROWS, 1)},
            "ci95": {"tool_calls.exact_match": interval(column)},
            "speed": speed,
            "general": summaries[m],
        }
    return metrics, samples, general


def verdict(*right, broken=(1, 1), drift=0.05, unfinished_base=0, far=None, **params) -> dict:
    metrics, samples, general = evaluation(*right, broken=broken, drift=drift, unfinished_base=unfinished_base, far=far)
    return gate.verdict(metrics, samples, general, SIZES, GateParams(**params))


@pytest.mark.parametrize(
    ("right", "decision", "statuses"),
    [
        ((0, 28, 28, 27), "deploy", ["pass", "pass", "pass"]),  # Q4 one row down: 3.1 points
        ((0, 28, 28, 22), "iterate", ["pass", "pass", "fail"]),  # six rows down: 18.8 points, interval 6.2 to 34.4
        ((0, 11, 11, 11), "iterate", ["fail", "pass", "pass"]),  # 34.4 < 40: the user's bar, judged on the estimate
        ((16, 10, 10, 10), "abort", ["fail", "fail", "pass"]),  # worse than the base model
        ((16, 18, 18, 18), "iterate", ["pass", "fail", "pass"]),  # 6.2 over base, interval 0 to 12.5: no 10 points
    ],
)
def test_verdict(right, decision, statuses):
    result = verdict(*right)
    assert result["verdict"] == decision
    assert [c["status"] for c in result["checks"][:3]] == statuses
    assert [c["status"] for c in result["checks"][3:]] == ["pass"] * 3  # degenerate, checkable, drift
    assert all(("FAILED" in r) == (c["status"] == "fail") for r, c in zip(result["reasons"], result["checks"]))
    assert all(c["ci95"] is not None for c in result["checks"])


def test_a_one_row_difference_at_the_limit_does_not_flip_the_verdict():
    """One row drop (3.1) passes the 5-point quant check; two rows (6.2) miss it, but the paired interval (0 to 15.6)
    reaches it: within noise, so the verdict stays deploy, and says so."""
    one, two = verdict(0, 28, 28, 27), verdict(0, 28, 28, 26)
    assert one["verdict"] == two["verdict"] == "deploy"
    drop = two["checks"][2]
    assert (drop["value"], drop["ci95"], drop["status"]) == (6.3, [0.0, 15.6], "within noise")
    assert (
        "Q4_K_M drop vs F16: 6.3 [95% interval 0 to 15.6] (needs <= 5) within noise (does not block)" in two["reasons"]
    )
    # ...while a drop the interval rules out still fails: 5 rows (15.6 points, interval 3.1 to 28.1) is not noise
    assert verdict(0, 28, 28, 23)["checks"][2]["status"] == "within noise"  # interval still reaches 5
    assert verdict(0, 28, 28, 22)["checks"][2]["status"] == "fail"  # interval 6.2 to 34.4


def test_a_model_that_breaks_general_answers_gets_iterate_naming_the_regression():
    """Today's default model broke 10 of 24 everyday answers where the base broke 1; here 12 of 60 against 1."""
    result = verdict(0, 28, 28, 28, broken=(1, 12))
    assert result["verdict"] == "iterate"
    assert result["regressions"] == ["degenerate general answers, Q4_K_M minus base"]
    degenerate = result["checks"][3]
    assert degenerate["value"] == 18.3 and degenerate["ci95"][0] > 0 and degenerate["status"] == "fail"


def test_one_more_degenerate_general_answer_is_noise_not_a_regression():
    result = verdict(0, 28, 28, 28, broken=(1, 2))
    degenerate = result["checks"][3]
    assert (degenerate["value"], degenerate["ci95"], degenerate["status"]) == (1.6, [0.0, 5.0], "within noise")
    assert result["verdict"] == "deploy" and result["regressions"] == []


def test_drift_blocks_only_when_its_interval_lies_past_the_limit():
    assert (
        verdict(0, 28, 28, 28, drift=0.11)["checks"][5]["status"] == "within noise"
    )  # 0.1 limit; interval 0.098 to 0.123
    far = verdict(0, 28, 28, 28, drift=1.5)
    assert far["checks"][5]["status"] == "fail" and far["verdict"] == "iterate"
    assert far["regressions"] == ["drift: tuned loss on the base's general answers minus the base's (nats/token)"]
    # a base with sound answers (59 of 60: one degenerate) still fails a tuned model that drifted far from them
    assert far["checks"][5]["scope"] == "on the 59 of 60 conversations the base answered soundly"
    assert far["reasons"][5].endswith("FAILED, on the 59 of 60 conversations the base answered soundly")
    assert far["base_answers"]["mostly_broken"] is False


def test_drift_from_a_pretrained_bases_broken_answers_is_not_applicable():
    """A pretrained base: 55 of 60 answers degenerate and every one still going at the cap. The tuned model moved far
    from them (+1.7 nats/token), which is the point of the fine-tune: drift is not applicable and does not block."""
    result = verdict(0, 28, 28, 28, broken=(55, 0), drift=1.7, unfinished_base=GENERAL)
    drift = result["checks"][5]
    assert (drift["status"], drift["passed"], drift["value"], drift["ci95"]) == ("not applicable", True, None, None)
    assert result["verdict"] == "deploy" and result["regressions"] == []
    assert (
        "drift: tuned loss on the base's general answers minus the base's (nats/token): not applicable, the base "
        "answered only 0 of 60 conversations soundly (91.7% degenerate, 100% unfinished at the cap)"
    ) in result["reasons"]
    assert result["base_answers"] == {
        "conversations": 60,
        "sound": 0,
        "degenerate_rate": 91.7,
        "unfinished_rate": 100.0,
        "mostly_broken": True,
    }
    # The other regression checks keep comparing with the base: a tuned model worse than a bad base still fails
    worse = verdict(0, 28, 28, 28, broken=(40, 55), drift=1.7, unfinished_base=GENERAL)
    assert worse["verdict"] == "iterate" and worse["regressions"] == ["degenerate general answers, Q4_K_M minus base"]
    # ...and gate.drift_on: all judges every conversation anyway
    every = verdict(0, 28, 28, 28, broken=(55, 0), drift=1.7, unfinished_base=GENERAL, drift_on="all")
    assert every["checks"][5]["status"] == "fail" and every["checks"][5]["scope"] == "on all 60 conversations"


@pytest.mark.parametrize(("broken_base", "status"), [(GENERAL - 10, "pass"), (GENERAL - 9, "not applicable")])
def test_drift_is_judged_on_the_sound_conversations_only(broken_base, status):
    """Mixed: the tuned model stays close where the base answered soundly and moved far (1.5) from the base's
    degenerate answers; only the sound ones count, and how many there are is reported. Below gate.MIN_SOUND of them
    drift is not applicable."""
    result = verdict(0, 28, 28, 28, broken=(broken_base, 0), drift=0.0, far=1.5)
    drift = result["checks"][5]
    sound = GENERAL - broken_base
    assert drift["status"] == status and result["base_answers"]["sound"] == sound
    assert result["base_answers"]["mostly_broken"] and result["verdict"] == "deploy"
    if status == "pass":
        assert abs(drift["value"]) <= 0.01 and drift["ci95"][1] < 0.1
        assert drift["scope"] == f"on the {sound} of 60 conversations the base answered soundly"
    every = verdict(0, 28, 28, 28, broken=(broken_base, 0), drift=0.0, far=1.5, drift_on="all")
    assert every["checks"][5]["status"] == "fail" and every["checks"][5]["value"] > 1


@pytest.mark.parametrize(("unfinished", "sound"), [(45, 59), (46, 0)])
def test_answers_cut_at_the_cap_count_as_sound_from_a_base_that_ends_its_turns(unfinished, sound):
    """An instruct base's answers still going at the suite's short cap are fair answers cut short: drift is judged
    on them (59: all but the one degenerate). A base that ended its turn on under a quarter of the conversations
    (14 of 60) is a pretrained one rambling on: none of its answers counts."""
    result = verdict(0, 28, 28, 28, drift=1.5, unfinished_base=unfinished)
    assert result["base_answers"]["sound"] == sound
    assert result["checks"][5]["status"] == ("fail" if sound else "not applicable")


def test_latency_and_memory_limits_are_checked_on_the_shipped_quant():
    result = verdict(0, 29, 29, 29, max_latency_s=1.0, max_memory_mb=800)
    assert result["verdict"] == "iterate"
    assert {c["check"]: c["passed"] for c in result["checks"]}["seconds per answer"] is False
    assert {c["check"]: c["passed"] for c in result["checks"]}["peak memory (MB)"] is True


def test_a_metric_the_evaluation_lacks_is_named():
    bare = {"models": {name: {"exact_match": 1.0, "speed": {}} for name in MODELS}}
    with pytest.raises(StepError, match="gate.metric 'tool_calls.exact_match' has no value for 'tuned'"):
        gate.verdict(bare, [], [], SIZES, GateParams())


def test_the_gate_step_records_the_verdict_and_enforce_fails_it(tmp_path):
    metrics, samples, general = evaluation(0, 28, 28, 22)
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(metrics))
    (tmp_path / "eval" / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    (tmp_path / "eval" / "general_samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in general))
    (tmp_path / "gguf").mkdir()
    (tmp_path / "gguf" / "sizes.json").write_text(json.dumps(SIZES))
    out, headline = tmp_path / "gate.json", tmp_path / "headline.json"
    assert gate.run(GateParams(), tmp_path / "eval", tmp_path / "gguf", out, headline)["verdict"] == "iterate"
    recorded = json.loads(out.read_text())  # recorded only
    # ...and its headline for `dvc exp show`: the verdict, the scores it rests on, the regressions
    # (tunemake.evaluation.headline)
    assert json.loads(headline.read_text()) == {
        "verdict": "iterate",
        "shipped_quant": "Q4_K_M",
        "tool_calls_em_tuned": 87.5,
        "tool_calls_em_tuned_low": metrics["models"]["tuned"]["ci95"]["tool_calls.exact_match"][0],
        "tool_calls_em_shipped": 68.8,
        "tool_calls_em_shipped_low": metrics["models"]["gguf-Q4_K_M"]["ci95"]["tool_calls.exact_match"][0],
        "degenerate_vs_base": 0.0,
        "checkable_vs_base": 0.0,
        "drift": next(c["value"] for c in recorded["checks"] if c["check"] == gate.DRIFT),
    }
    assert recorded["verdict"] == "iterate" and recorded["enforced"] is False and recorded["shipped"] == "Q4_K_M"
    assert [c["check"] for c in recorded["checks"] if not c["passed"]] == ["Q4_K_M drop vs F16"]
    out.unlink()
    with pytest.raises(StepError, match=r"verdict is ITERATE, not deploy \(gate.enforce is on\):\n  tuned"):
        gate.run(GateParams(enforce=True), tmp_path / "eval", tmp_path / "gguf", out)
    assert not out.exists()


def test_intervals_are_in_points_seeded_and_paired_ones_are_tighter():
    from tunemake.evaluation.stats import paired_interval

    tuned, quant = [1.0] * 28 + [0.0] * 4, [1.0] * 27 + [0.0] * 5
    assert interval(tuned) == interval(tuned) == [75.0, 96.9]  # 87.5 points, seeded: the same every run
    assert interval([1.0] * 32) == [100.0, 100.0] and interval([1.0]) is None
    separate = (interval(tuned)[1] - interval(quant)[0], interval(tuned)[0] - interval(quant)[1])
    paired = paired_interval(tuned, quant)
    assert paired == [0.0, 9.4] and paired[1] - paired[0] < separate[0] - separate[1]
    with pytest.raises(ValueError, match="the same rows"):
        paired_interval(tuned, quant[:-1])


def with_sft(metrics: dict, samples: list[dict], sft_right: int) -> None:
    """Add the SFT-only model's row (align ran): it gets its first sft_right rows right."""
    for i, sample in enumerate(samples):
        sample["scores"]["sft"] = {"tool_calls": {"exact_match": float(i < sft_right)}}
    metrics["models"]["sft"] = {"tool_calls": {"exact_match": round(100 * sft_right / ROWS, 1)}}


@pytest.mark.parametrize(
    ("sft_right", "status", "decision"),
    [
        (28, "pass", "deploy"),  # DPO kept every row SFT had
        (29, "within noise", "deploy"),  # one row lost (3.1 > 2): the interval reaches 0, so it does not block
        (32, "fail", "iterate"),  # four rows lost (12.5 points, interval above 2): alignment undid SFT
    ],
)
def test_alignment_may_not_cost_the_task_score_beyond_noise(sft_right, status, decision):
    metrics, samples, general = evaluation(0, 28, 28, 28)
    with_sft(metrics, samples, sft_right)
    result = gate.verdict(metrics, samples, general, SIZES, GateParams())
    check = next(c for c in result["checks"] if c["check"].startswith("alignment drop"))
    assert check["status"] == status and result["verdict"] == decision


def restraint_run(base_right: int, shipped_right: int, rows: int) -> tuple[dict, list[dict], dict]:
    """Our no-call rows and BFCL irrelevance, each of `rows` rows: the base abstains on its first `base_right`, the
    shipped Q4_K_M on its first `shipped_right`; on simple_python the shipped model loses three rows of ten."""
    from tunemake.steps import bfcl

    right = {"base": base_right, "gguf-Q4_K_M": shipped_right}
    samples = [{"scores": {m: {"no_call": float(i < n)} for m, n in right.items()}} for i in range(rows)]
    metrics = {"models": {m: {"no_call": round(100 * n / rows, 1)} for m, n in right.items()}}
    verdicts = {
        m: {
            "irrelevance": [{"valid": i < n} for i in range(rows)],
            "simple_python": [{"valid": i < (5 if m == "base" else 2)} for i in range(10)],
        }
        for m, n in (("base", base_right), ("tuned", shipped_right), ("shipped", shipped_right))
    }
    asked = {"irrelevance": [None] * rows, "simple_python": [None] * 10}
    return metrics, samples, {"categories": bfcl.summary(asked, verdicts)}


def test_calling_where_the_base_abstains_blocks_and_one_row_does_not():
    metrics, samples, scored = restraint_run(30, 2, 30)
    checks = gate.restraint_checks(metrics, samples, scored, "Q4_K_M", GateParams())
    assert [c["check"] for c in checks] == [
        "no call where none fits: base minus Q4_K_M, our test rows",
        "BFCL irrelevance: base minus Q4_K_M",
    ]  # simple_python is shown, not judged, while gate.max_bfcl_drop is null
    assert all(c["status"] == "fail" and c["regression"] for c in checks)
    assert checks[1]["value"] == 93.3 and checks[1]["ci95"][0] > 0
    metrics, samples, scored = restraint_run(30, 29, 30)  # one row of 30: within noise, does not block
    assert all(c["passed"] for c in gate.restraint_checks(metrics, samples, scored, "Q4_K_M", GateParams()))
    judged = gate.restraint_checks(metrics, samples, scored, "Q4_K_M", GateParams(max_bfcl_drop=0))
    assert judged[-1]["check"] == "BFCL simple_python: base minus Q4_K_M" and judged[-1]["value"] == 30.0


def test_the_verdict_names_irrelevance_when_the_tuned_model_lost_its_restraint():
    metrics, samples, general = evaluation(8, 30, 30, 30)
    restraint, restraint_samples, scored = restraint_run(30, 2, 30)
    for name, values in restraint["models"].items():
        metrics["models"][name].update(values)
    for row, extra in zip(samples, restraint_samples):
        for name, scores in extra["scores"].items():
            row["scores"][name].update(scores)
    result = gate.verdict(metrics, samples, general, SIZES, GateParams(), scored)
    assert result["verdict"] == "iterate"
    assert "BFCL irrelevance: base minus Q4_K_M" in result["regressions"]
    assert any(r.startswith("BFCL irrelevance") and "FAILED" in r for r in result["reasons"])
