"""The degenerate-answer detector, on real broken answers of a fine-tuned SmolLM2 (from an earlier over-trained run) and on fair ones."""

from __future__ import annotations

import pytest

from tunemake.evaluation.degenerate import reasons

BROKEN = {
    "<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<<": "char_run",
    "<p><strong><em><strong><em><strong><em></em></strong></em></strong></em></strong></p>": "markup_soup",
    "<p><strong>Paris</strong></p><p><strong><em><strong><em></em></strong></em></strong></p>": "markup_soup",
    "Aleut, ain't no rain, Aleut, ain't no rain, Aleut, ain't no rain, Aleut, ain't no rain, Aleut, ain't no": "loop",
    "*sigh* *sigh* *sigh*": "word_repeat",
    "The the the the answer is": "word_repeat",
    "Sure! Here is a list: " + "apples, apples, pears, " * 8: "loop",  # a loop runs on to the token limit
    "   ": "empty",
}
FAIR = [
    "To boil an egg, place it in a pot of cold water, bring it to a boil, then simmer for 9 minutes.",
    "Paris is the capital of France.",
    "17 + 25 = 42",
    "1. Preheat the oven to 180 C.\n2. Mix 200 g of flour with 100 g of sugar.\n3. Bake for 25 minutes.",
    "- Add 1 cup of flour.\n- Add 1 cup of sugar.\n- Add 1 cup of milk.",
    "| unit | value |\n|----------|----------|\n| km | 1000 m |",
    "def add(a, b):\n    return a + b",
    '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Austin"}}\n</tool_call>',
    "Roses are red, violets are blue, sugar is sweet, and so are you.",
    "That will be 100000000 bytes, or 100 MB.",
    "Bonjour, comment allez-vous ? Très bien, merci.",
    "I can't help with making a weapon, but I can explain how locks work in general.",
    "Use <b>bold</b> for emphasis in HTML.",
]


@pytest.mark.parametrize(("answer", "reason"), BROKEN.items())
def test_broken_answers_are_flagged_for_what_is_wrong(answer, reason):
    assert reason in reasons(answer)


@pytest.mark.parametrize("answer", FAIR)
def test_fair_answers_are_not_flagged(answer):
    assert reasons(answer) == []


def test_an_answer_cut_at_the_token_limit_did_not_stop():
    assert reasons("Paris is the capital of France and", stopped=False) == ["no_stop"]
