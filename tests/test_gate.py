"""The deploy / iterate / abort decision and its enforcement."""

from __future__ import annotations

import json

import pytest

from tunemake import gate
from tunemake.errors import StepError
from tunemake.params import GateParams

SIZES = {"shipped": "Q4_K_M", "unquantized": "F16", "order": ["F16", "Q4_K_M"], "files": {"F16": {}, "Q4_K_M": {}}}


def metrics(base: float, tuned: float, f16: float, quant: float) -> dict:
    speed = {"seconds_per_answer": 1.5, "peak_rss_mb": 700.0}
    return {
        "models": {
            name: {"tool_calls": {"exact_match": value}, "speed": speed}
            for name, value in (("base", base), ("tuned", tuned), ("gguf-F16", f16), ("gguf-Q4_K_M", quant))
        }
    }


@pytest.mark.parametrize(
    ("scores", "decision", "failed"),
    [
        ((0, 87.5, 87.5, 84.4), "deploy", []),
        ((0, 87.5, 87.5, 68.8), "iterate", ["Q4_K_M drop vs F16"]),
        ((0, 35.0, 35.0, 35.0), "iterate", ["tuned tool_calls.exact_match"]),
        ((50, 30.0, 30.0, 30.0), "abort", ["tuned tool_calls.exact_match", "gain over base"]),
        ((50, 52.0, 52.0, 52.0), "iterate", ["gain over base"]),
    ],
)
def test_verdict(scores, decision, failed):
    result = gate.verdict(metrics(*scores), SIZES, GateParams())
    assert result["verdict"] == decision
    assert [c["check"] for c in result["checks"] if not c["passed"]] == failed
    assert len(result["reasons"]) == 3 and all(
        ("FAILED" in r) == any(r.startswith(f) for f in failed) for r in result["reasons"]
    )


def test_latency_and_memory_limits_are_checked_on_the_shipped_quant():
    result = gate.verdict(metrics(0, 90, 90, 90), SIZES, GateParams(max_latency_s=1.0, max_memory_mb=800))
    assert result["verdict"] == "iterate"
    assert {c["check"]: c["passed"] for c in result["checks"]}["seconds per answer"] is False
    assert {c["check"]: c["passed"] for c in result["checks"]}["peak memory (MB)"] is True


def test_a_metric_the_evaluation_lacks_is_named():
    bare = {
        "models": {name: {"exact_match": 1.0, "speed": {}} for name in ("base", "tuned", "gguf-F16", "gguf-Q4_K_M")}
    }
    with pytest.raises(StepError, match="gate.metric 'tool_calls.exact_match' has no value for 'tuned'"):
        gate.verdict(bare, SIZES, GateParams())


def test_the_gate_step_records_the_verdict_and_enforce_fails_it(tmp_path):
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / "metrics.json").write_text(json.dumps(metrics(0, 87.5, 87.5, 68.8)))
    (tmp_path / "gguf").mkdir()
    (tmp_path / "gguf" / "sizes.json").write_text(json.dumps(SIZES))
    out = tmp_path / "gate.json"
    assert gate.run(GateParams(), tmp_path / "eval", tmp_path / "gguf", out)["verdict"] == "iterate"  # recorded only
    recorded = json.loads(out.read_text())
    assert recorded["verdict"] == "iterate" and recorded["enforced"] is False and recorded["shipped"] == "Q4_K_M"
    assert [c["check"] for c in recorded["checks"] if not c["passed"]] == ["Q4_K_M drop vs F16"]
    out.unlink()
    with pytest.raises(StepError, match=r"verdict is ITERATE, not deploy \(gate.enforce is on\):\n  tuned"):
        gate.run(GateParams(enforce=True), tmp_path / "eval", tmp_path / "gguf", out)
    assert not out.exists()
