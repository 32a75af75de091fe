"""Is an answer degenerate? The failures a narrow fine-tune shows on everything it was not trained on.

An answer is degenerate when any of these holds (each named in the result, so a report can say which):

- empty: nothing but whitespace (after the end-of-turn token was stripped);
- no_stop: the model never ended its turn: generation stopped at the token limit;
- char_run: one character, not a space, digit or rule character (- = _), 8 or more times in a row: `<<<<<<<<`;
- word_repeat: one word 3 or more times in a row: `*sigh* *sigh* *sigh*`;
- loop: the answer cycles: among its word 3-grams (at least 6), the most common one occurs 3 or more times and
  under half are distinct: "Aleut, ain't no rain, Aleut, ain't no rain, ...";
- markup_soup: 4 or more HTML-like tags (tunemake's own <tool_call> tags excepted) making up 40% or more of the
  answer's non-space characters: `<p><strong><em><strong>...`.

The thresholds were set on real broken answers of a fine-tuned SmolLM2 and on coherent answers, lists, code and
tool calls (tests/test_degenerate.py), leaning towards missing a borderline case rather than flagging a fair answer.
"""

from __future__ import annotations

import re
from collections import Counter

CHAR_RUN = re.compile(r"([^\s\d\-=_])\1{7,}")
WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?|[^\w\s]+")
TAG = re.compile(r"</?[A-Za-z][\w-]*(?:\s[^<>]*)?/?>")
OWN_TAGS = {"tool_call", "tool_response", "tools"}


def reasons(answer: str, stopped: bool = True) -> list[str]:
    """The degeneration criteria the answer meets (empty list: not degenerate). `stopped`: it ended its turn."""
    found = []
    if not answer.strip():
        found.append("empty")
    if not stopped:
        found.append("no_stop")
    if CHAR_RUN.search(answer):
        found.append("char_run")
    words = [w.lower() for w in WORD.findall(answer) if any(c.isalnum() for c in w)]
    if any(words[i] == words[i + 1] == words[i + 2] for i in range(len(words) - 2)):
        found.append("word_repeat")
    grams = list(zip(words, words[1:], words[2:]))
    if len(grams) >= 6 and Counter(grams).most_common(1)[0][1] >= 3 and len(set(grams)) < len(grams) / 2:
        found.append("loop")
    tags = [t for t in TAG.findall(answer) if t.strip("</>").split()[0] not in OWN_TAGS]
    visible = sum(not c.isspace() for c in answer)
    if len(tags) >= 4 and sum(len(t) for t in tags) >= 0.4 * max(visible, 1):
        found.append("markup_soup")
    return found
