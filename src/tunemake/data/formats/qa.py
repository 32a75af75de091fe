"""Question/answer pairs: {"question", "answer", "topic"?}. A topic is folded into the question as
"For {topic}, {question}", as the practical-skills job did, and kept in meta for stratifying."""

from __future__ import annotations

from tunemake.data.formats.common import Chat, text_field


def convert(row: dict, source) -> Chat:
    question = text_field(row, "question")
    topic = text_field(row, "topic", required=False).strip()
    if topic:
        question = f"For {topic}, {question[:1].lower()}{question[1:]}"
    answer = text_field(row, "answer")
    return Chat(
        [{"role": "user", "content": question}, {"role": "assistant", "content": answer}],
        consumed=("question", "answer"),
    )
