"""evaluate's engine check: the base and tuned models' scores come from their 16-bit GGUFs, so a difference from transformers on
the rows it timed must be recorded and shown, never pass silently (the pipeline run is in tests/test_frontdoors.py);
the base's row, read from the baseline step, must have been scored with this run's settings; and the held-out loss,
scored with shared prompt passes, is train's own loss."""

from __future__ import annotations

import json
import logging

import pytest

from tunemake.errors import StepError
from tunemake.evaluation import summaries
from tunemake.params.eval import EvalParams
from tunemake.steps.evaluate import (
    drift_summary,
    engine_check,
    general_scores,
    preference_change,
    read_baseline,
    sound_answers,
)


def test_a_row_where_the_engines_differ_is_recorded_and_logged(caplog):
    rows = [{"id": f"r{i}"} for i in range(4)]
    tuned = {"timed_rows": [0, 3], "timed_answers": ["same", "transformers says"], "answers": ["same", "", "", "gguf"]}
    with caplog.at_level(logging.WARNING, logger="tunemake"):
        check = engine_check(rows, tuned, "tuned", "gguf-F16")
    assert check == {
        "answers_from": "gguf-F16",
        "rows": 2,
        "equal": 1,
        "differing": [{"id": "r3", "transformers": "transformers says", "gguf": "gguf"}],
    }
    assert "test row r3 the tuned model" in caplog.text and "'transformers says'" in caplog.text


def test_engines_that_agree_give_a_clean_check():
    tuned = {"timed_rows": [1], "timed_answers": ["ok"], "answers": ["a", "ok"]}
    check = engine_check([{"id": "a"}, {"id": "b"}], tuned, "base", "gguf-base")
    assert check == {"answers_from": "gguf-base", "rows": 1, "equal": 1, "differing": []}


def test_a_baseline_scored_with_other_eval_settings_is_refused(tmp_path):
    """evaluate reads the base's row from the baseline step; one scored with other settings would compare unlike
    with unlike, so it must be refused with the file and the fix named."""
    settings = EvalParams().model_dump(include={"max_new_tokens", "speed_rows", "limit"})
    (tmp_path / "base.json").write_text(json.dumps({"settings": settings, "answers": ["a"]}))
    assert read_baseline(tmp_path, EvalParams())["answers"] == ["a"]
    with pytest.raises(StepError, match=r"base.json scored the base with eval settings .*run the baseline step again"):
        read_baseline(tmp_path, EvalParams(max_new_tokens=4))


def test_what_alignment_changed_is_measured_pair_by_pair():
    """Each pair's margin against its own margin before: one pair flips (+1 of 4 = 25 points); the margins rose on
    three pairs and fell on one, by 1.6 nats on average."""
    sft = [(-5.0, -4.0), (-3.0, -9.0), (-2.0, -1.0), (-7.0, -8.0)]  # margins -1, 6, -1, 1
    tuned = [(-4.0, -5.0), (-3.0, -12.0), (-2.0, -0.5), (-6.0, -9.0)]  # margins 1, 9, -1.5, 3
    change = preference_change(sft, tuned)
    assert change["accuracy"] == 25.0 and change["margin"] == 1.625 and change["margins_rose"] == 3
    assert change["pairs"] == 4 and change["ci95"]["margin"][0] <= 1.625 <= change["ci95"]["margin"][1]
    assert change["ci95"]["accuracy"][0] == 0.0  # three of four pairs did not flip: a single pair is noise


def test_drift_is_measured_on_every_conversation_and_on_those_the_base_answered_soundly():
    """A base that answered three of four prompts well (one of them cut at the cap, as the suite's short cap cuts
    fair answers) and looped on one: the tuned model's drift on the three is what the gate judges; on all four it is
    dominated by the loop it moved away from."""
    suite = [{"answer": []}] * 4
    answers = ["Paris is the capital.", "Two plus two is four.", "First, boil the water. Then", "the the the the"]
    base = general_scores(suite, answers, [True, True, False, True])
    sound = sound_answers(base)
    assert sound == [True, True, True, False]
    summary = drift_summary([1.0, 1.0, 1.0, 0.2], [1.1, 1.0, 1.0, 4.0], sound)
    assert (summary["drift"], summary["drift_sound"]) == (0.975, 0.0333)
    assert (summary["conversations"], summary["sound_conversations"]) == (4, 3)
    assert summary["ci95"]["drift"][1] > 0.1 >= summary["ci95"]["drift_sound"][1]
    # A base that ends its turn on under a quarter of the prompts is a pretrained one: none of its answers is sound
    rambling = general_scores(suite * 2, ["Once upon a time there was"] * 7 + ["Paris."], [False] * 7 + [True])
    assert sound_answers(rambling) == [False] * 8
    none = drift_summary([1.0] * 8, [2.0] * 8, [False] * 8)
    assert (none["drift_sound"], none["ci95"]["drift_sound"], none["sound_conversations"]) == (None, None, 0)


def test_the_held_out_loss_is_the_training_loss_on_the_test_rows(tmp_path, tiny_llama_dir):
    """evaluate scores each held-out row as a prompt and what follows its first trained token, sharing prompt
    passes with the preference pairs: the loss must equal train's own (assistant_loss over padded whole rows), for
    rows of two trained turns, a turn split as row#1 / row#2, and a row the evaluation did not pick."""
    import datasets
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from tunemake.data.chat import Renderer
    from tunemake.evaluation.heldout import held_out_rows, loss_and_pairs
    from tunemake.training.loss import IGNORE, assistant_loss

    generator = torch.Generator().manual_seed(0)
    draw = lambda n: torch.randint(3, 1000, (n,), generator=generator).tolist()  # noqa: E731
    rows = []
    for row_id, spans in [
        ("a", [(7, 4)]),
        ("b", [(12, 3), (5, 6)]),
        ("c#1", [(9, 2)]),
        ("c#2", [(20, 5)]),
        ("d", [(6, 3)]),
    ]:
        ids, labels = [], []
        for untrained, trained in spans:
            part = draw(untrained + trained)
            ids, labels = ids + part, labels + [IGNORE] * untrained + part[untrained:]
        rows.append({"id": row_id, "input_ids": ids, "labels": labels})
    datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)}).save_to_disk(tmp_path / "dataset")
    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir).eval()
    renderer = Renderer(AutoTokenizer.from_pretrained(tiny_llama_dir))

    held_out = held_out_rows(tmp_path, {"a", "b", "c"})
    with torch.inference_mode():
        loss, pairs = loss_and_pairs(model, renderer, held_out, [], batch_size=2)
        picked = [{k: r[k] for k in ("input_ids", "labels")} for r in rows if r["id"] != "d"]
        batch = DataCollatorForLanguageModeling(pad_token_id=0)(picked)
        trained, _ = assistant_loss(model, batch)
    assert len(held_out) == 4 and pairs == []
    assert loss == pytest.approx(trained.item(), rel=1e-5)


def test_restraint_scores_a_call_where_no_offered_tool_fits_as_wrong():
    """A row that offers tools none of which fits (its reference answers in words) scores `no_call`; a call counts
    against it even when nobody could parse it."""
    tool = {"type": "function", "function": {"name": "set_timer", "parameters": {"type": "object", "properties": {}}}}
    row = {"tools": [tool], "reference": "None fits.", "reference_calls": []}
    plain = {"tools": [], "reference": "Hi.", "reference_calls": []}
    call = '<tool_call>\n{"name": "set_timer", "arguments": {}}\n</tool_call>'
    answers = ["None fits.", call, "<tool_call>{broken", "Hello."]
    summary, per_row = summaries.summarise([row, row, row, plain], answers, [True] * 4)
    assert [s.get("no_call") for s in per_row] == [1.0, 0.0, 0.0, None]
    assert summary["no_call"] == 33.3 and summary["ci95"]["no_call"]
    # served: the parsed calls decide, and text the server left unparsed still shows a call
    _, per_row = summaries.summarise([row, row], ["None fits.", call], [True, True], ["", ""])
    assert [s["no_call"] for s in per_row] == [1.0, 0.0]
