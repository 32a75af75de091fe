"""Rendering canonical conversations with the base model's own chat template (extended with tools where it ignores
them, tunemake.data.tool_template): the text and tokens training learns from, which tokens are the assistant's, and
the stop tokens that end a turn."""

from __future__ import annotations

import json
from pathlib import Path

from tunemake.data.tool_template import extend_tools, is_extended, raises, tool_support
from tunemake.errors import StepError

OTHER_ANSWER = "\u00a7tunemake\u00a7"  # an answer no row starts with: where it departs from a real one, that one starts


def format_call(call: dict) -> str:
    """One call as the extended template writes it (the reference text of a held-out row)."""
    function = call["function"]
    return (
        "<tool_call>\n"
        + json.dumps({"name": function["name"], "arguments": function["arguments"]}, ensure_ascii=False)
        + "\n</tool_call>"
    )


def answer_kind(record: dict) -> str:
    """What a canonical record's last assistant turn is: `tool_call` (it calls), `no_call` (tools were offered and
    it answers in words: restraint) or `text` (no tools offered)."""
    last = next(m for m in reversed(record["messages"]) if m["role"] == "assistant")
    if last.get("tool_calls"):
        return "tool_call"
    return "no_call" if record.get("tools") else "text"


def openai_messages(messages: list[dict]) -> list[dict]:
    """Canonical messages as an OpenAI request carries them: call arguments as JSON text, each call with an id."""
    out = []
    for message in messages:
        message = dict(message)
        if message.get("tool_calls"):
            message["tool_calls"] = [
                {
                    "id": f"call_{i}",
                    "type": "function",
                    "function": {
                        "name": call["function"]["name"],
                        "arguments": json.dumps(call["function"]["arguments"], ensure_ascii=False),
                    },
                }
                for i, call in enumerate(message["tool_calls"])
            ]
        out.append(message)
    return out


def folded(messages: list[dict]) -> list[dict]:
    """The system prompt as the first paragraph of the first user turn, for templates with no system role."""
    if not messages or messages[0]["role"] != "system" or len(messages) < 2 or messages[1]["role"] != "user":
        return messages
    system, user, *rest = messages
    return [{**user, "content": f"{system['content']}\n\n{user['content']}"}, *rest]


def fast_tokenizer(folder):
    """The tokenizer saved in `folder` (its tokenizer.json, special tokens and chat template); tokenize maps assistant
    text to tokens through its offsets. The generic fast class, not AutoTokenizer: that reads the model's config, which
    imports torch (4 of tokenize's 7 s of start-up), and tokenize encodes without the class's special tokens anyway."""
    from transformers import PreTrainedTokenizerFast

    if not (Path(folder) / "tokenizer.json").is_file():
        raise StepError(f"{folder}: tokenize needs a fast tokenizer (tokenizer.json) to map assistant text to tokens")
    return PreTrainedTokenizerFast.from_pretrained(folder)


PER_TURN = "one text per assistant turn where it rewrites earlier turns"
PROBE = [  # two turns: a template that rewrites earlier turns (reasoning models drop old thoughts) shows here
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Capital of Norway?"},
    {"role": "assistant", "content": "Oslo."},
    {"role": "user", "content": "And of Peru?"},
    {"role": "assistant", "content": "Lima."},
]


class Renderer:
    """Renders canonical records with one tokenizer's template (extended with tools where it ignores them).

    Training finds the assistant tokens by rendering growing prefixes of each conversation. A family whose own
    template rewrites earlier turns (Qwen3, DeepSeek-R1 distills, Mistral-Nemo...) cannot be read that way; for
    those, TRL ships a training template that renders history as it was generated (trl.chat_template_utils), used
    here for training only, and only when it renders the generation prompt exactly as the model's own template
    does. Without one, each assistant turn is trained as its own text (`sequences`). `training_template` says which
    was used. Prompts for inference always use the model's own template.
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer
        extend_tools(tokenizer)  # a no-op for a template already extended, or native
        self.extended = is_extended(tokenizer)
        self.no_tools = None  # render() reads it while the probes below decide it
        # `tools` for a conversation without any: None, or [] for templates that loop over it unguarded (Hermes
        # tool_use, Command-R), which raise on None
        self.no_tools = [] if raises(lambda: self.render(PROBE[1:], None), TypeError) else None
        # Templates with no system role (Gemma 2 raises on one): the system prompt goes into the first user turn,
        # as their model cards advise
        self.fold_system = raises(lambda: self.render(PROBE, None)) and not raises(lambda: self.render(PROBE[1:], None))
        self.support = tool_support(tokenizer)
        self.stops = [tokenizer.convert_ids_to_tokens(i) for i in stop_token_ids(tokenizer)]
        self.turn_end = turn_end(tokenizer)
        self.specials = sorted(map(tokenizer.convert_ids_to_tokens, _special_ids(tokenizer)), key=len, reverse=True)
        self.training = None  # a chat template used for training instead of the model's own
        self.training_template = "the model's own"
        try:
            self.prefix_spans(*self.prepare(PROBE, []))
        except ValueError:
            self.training, self.training_template = trl_training_template(self)

    def prepare(self, messages: list[dict], tools: list[dict]) -> tuple[list[dict], list[dict] | None]:
        if not self.support.native and (tools or any(m.get("tool_calls") or m["role"] == "tool" for m in messages)):
            raise StepError(
                "the chat template does not render tools or tool calls, and it is not one template tunemake can "
                "extend (a dict of named templates); set base.chat_template in params.yaml to one that does"
            )
        return (folded(messages) if self.fold_system else messages), tools or None

    def render(
        self, messages: list[dict], tools: list[dict] | None, *, add_generation_prompt: bool = False, template=None
    ) -> str:
        return self.tokenizer.apply_chat_template(
            messages,
            tools=self.no_tools if tools is None else tools,
            tokenize=False,
            add_generation_prompt=add_generation_prompt,
            chat_template=template,
        )

    def sequences(self, messages: list[dict], tools: list[dict] | None) -> list[tuple[str, list[tuple[int, int]]]]:
        """The texts to train on and the character spans of their assistant turns (end-of-turn token included).

        One text when the template renders each prefix of the conversation as a prefix of its text (found by
        rendering growing prefixes). A template that rewrites earlier turns (drops old thoughts, moves the system
        prompt to the last user turn, opens a thinking block in the generation prompt) gives one text per assistant
        turn instead: the history as the template renders it, the generation prompt the model gets at inference,
        and the answer as the template writes it, so every turn is trained in the context it is used in.
        """
        try:
            return [self.prefix_spans(messages, tools)]
        except ValueError:
            return [
                self.turn_sequence(messages[: i + 1], tools) for i, m in enumerate(messages) if m["role"] == "assistant"
            ]

    def prefix_spans(self, messages: list[dict], tools: list[dict] | None) -> tuple[str, list[tuple[int, int]]]:
        """The full text and every assistant turn's span, if the template renders prefixes as prefixes; else
        ValueError. Each span runs through its end-of-turn token (turn_end, added after the last answer where the
        template writes it only between turns)."""
        full = self.render(messages, tools, template=self.training)
        spans = []
        for i, message in enumerate(messages):
            if message["role"] != "assistant":
                continue
            before = self.render(messages[:i], tools, add_generation_prompt=True, template=self.training)
            through = full if i == len(messages) - 1 else self.render(messages[: i + 1], tools, template=self.training)
            eos = self.tokenizer.eos_token or ""
            if eos and not full.startswith(through) and through.rstrip().endswith(eos):
                through = through.rstrip()[: -len(eos)]  # Phi-3.5 ends the conversation, not the turn, with eos
            if not (through.startswith(before) and full.startswith(through)):
                raise ValueError(f"the chat template does not render turn {i} as a continuation of the turns before it")
            spans.append((len(before), len(through.rstrip())))
        if self.turn_end and messages[-1]["role"] == "assistant":
            full = full.rstrip() + self.turn_end
        ends = [self._through_turn_end(full, end) for _, end in spans]
        if None in ends:  # RWKV World ends turns with a blank line: each turn its own text, ending with turn_end
            raise ValueError("the chat template ends an assistant turn with no token")
        return full, [(start, end) for (start, _), end in zip(spans, ends)]

    def _through_turn_end(self, text: str, end: int) -> int | None:
        """A turn that does not end with a special token ends with the one the template writes next (Apertus'
        <|assistant_end|>, GLM's <|user|> or <|observation|>); None if the template writes none."""
        if not self.turn_end or any(text[:end].endswith(token) for token in self.specials):
            return end
        rest = text[end:].lstrip()
        token = next((t for t in self.specials if rest.startswith(t)), None)
        return len(text) - len(rest) + len(token) if token else None

    def turn_sequence(self, messages: list[dict], tools: list[dict] | None) -> tuple[str, list[tuple[int, int]]]:
        """The generation prompt for the last (assistant) message, then that answer as the template renders it, up to
        its end-of-turn token (some templates render more after it: Command-R's tool instructions)."""
        prompt = self.render(messages[:-1], tools, add_generation_prompt=True)
        through = self.render(messages, tools)
        if through.startswith(prompt):
            answer = through[len(prompt) :]
        else:  # the answer starts where the rendering of a different answer departs from this one
            other = self.render([*messages[:-1], {"role": "assistant", "content": OTHER_ANSWER}], tools)
            start = next((k for k, (a, b) in enumerate(zip(through, other)) if a != b), None)
            if start is None or not through[start:].strip():
                raise ValueError(
                    f"the chat template does not render turn {len(messages) - 1} (an assistant answer), so its tokens "
                    "cannot be located; use a template that renders assistant turns (base.chat_template in params.yaml)"
                )
            answer = through[start:]
        ends = [k + len(stop) for stop in self.stops if (k := answer.find(stop, 1)) > 0]
        answer = answer[: min(ends)] if ends else answer.rstrip() + self.turn_end
        return prompt + answer, [(len(prompt), len(prompt) + len(answer))]


def encode_pair(renderer: Renderer, pair: dict) -> dict[str, list[int]]:
    """A preference pair as TRL's DPO collator reads it: prompt_ids, chosen_ids, rejected_ids. Each answer is
    rendered after the prompt exactly as tokenize renders a training row, and cut where its first assistant turn
    starts (the turn header stays with the prompt, as a generation prompt) and its last one ends (end-of-turn token
    included). An answer of several turns keeps the tool results between them."""
    out = {}
    asked = sum(m["role"] == "assistant" for m in pair["prompt"])  # assistant turns before the answer
    for side in ("chosen", "rejected"):
        try:
            sequences = renderer.sequences(*renderer.prepare(pair["prompt"] + pair[side], pair.get("tools", [])))
        except ValueError as err:
            raise StepError(f"pair {pair['id']}: {err}") from None
        if len(sequences) > 1 and sum(m["role"] == "assistant" for m in pair[side]) > 1:
            raise StepError(
                f"pair {pair['id']}: the chat template rewrites earlier turns, so an answer of several assistant turns "
                "cannot be scored as one text; keep each answer to one assistant turn"
            )
        text, spans = sequences[-1]
        encoding = renderer.tokenizer._tokenizer.encode(text, add_special_tokens=False)
        (start, _), end = spans[asked if len(sequences) == 1 else 0], spans[-1][1]
        first = encoding.char_to_token(start)
        first += encoding.token_to_chars(first)[0] < start  # a token that starts before the answer is the prompt's
        last = encoding.char_to_token(end - 1)
        if out and encoding.ids[:first] != out["prompt_ids"]:
            raise StepError(
                f"pair {pair['id']}: the chat template renders the prompt differently before its two answers, so the "
                "answers cannot be compared on one prompt; use a template without answer-dependent rewriting "
                "(base.chat_template in params.yaml)"
            )
        out["prompt_ids"], out[f"{side}_ids"] = encoding.ids[:first], encoding.ids[first : last + 1]
    return out


def trl_training_template(renderer: Renderer) -> tuple[str | None, str]:
    """TRL's prefix-preserving training template for this family, if it has one and it renders the probe's
    generation prompt exactly as the model's own template does; else (None, why)."""
    from trl.chat_template_utils import get_training_chat_template

    # ValueError for an unknown family; TRL's probes render without tools, which some templates reject
    try:
        template = get_training_chat_template(renderer.tokenizer)
    except Exception:
        return None, f"the model's own, {PER_TURN} (TRL has no training template for it)"
    if template is None:
        return None, f"the model's own, {PER_TURN}"
    # The first turn's prompt: later ones differ by design (the model's own template drops earlier thoughts)
    prompt = PROBE[:2]
    if renderer.render(prompt, None, add_generation_prompt=True, template=template) != renderer.render(
        prompt, None, add_generation_prompt=True
    ):
        return None, f"the model's own, {PER_TURN} (TRL's training template renders a different generation prompt)"
    return template, "TRL's training template for this family (the model's own rewrites earlier turns)"


def _tails(tokenizer) -> tuple[str, str]:
    """What the template writes after a one-word answer: when the conversation ends there, and when a user turn
    follows (up to that turn's text). tools=[] for templates that loop over `tools` unguarded (Hermes tool_use,
    Command-R); the same text otherwise."""
    question, answer, again = (
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Ok"},
        {"role": "user", "content": "Hi again"},
    )
    last = tokenizer.apply_chat_template([question, answer], tools=[], tokenize=False)
    more = tokenizer.apply_chat_template([question, answer, again], tools=[], tokenize=False)
    follows = more.rfind("Hi again")
    answer = more.rfind("Ok", 0, follows)  # -1 where the template rewrites earlier answers: no tail to read there
    return last[last.rfind("Ok") + 2 :], more[answer + 2 : follows] if answer >= 0 else ""


def _special_ids(tokenizer) -> set[int]:
    # Added tokens count only when marked special: Gemma's tokenizer also adds whitespace runs ("\n"), and a stop
    # token "\n" would cut every answer at its first line break.
    added = {i for i, token in tokenizer.added_tokens_decoder.items() if token.special and token.content.strip()}
    return set(tokenizer.all_special_ids) | added


def _specials(tokenizer, text: str) -> list[int]:
    special = _special_ids(tokenizer)
    return [t for t in tokenizer(text, add_special_tokens=False)["input_ids"] if t in special]


def turn_end(tokenizer) -> str:
    """The end-of-turn token to add after a conversation's last answer, for templates that write nothing after it
    and their end of turn only when another turn follows (Apertus: <|assistant_end|>; GLM ends a turn with the next
    role, <|user|>), else the eos token; "" when the template ends the last answer itself. Without it the model
    would never learn to stop."""
    last, follows = _tails(tokenizer)
    if last.strip():
        return ""
    first = _specials(tokenizer, follows)[:1]
    return tokenizer.convert_ids_to_tokens(first[0]) if first else tokenizer.eos_token or ""


def stop_token_ids(tokenizer) -> list[int]:
    """The tokens that end an assistant turn in this template (for ChatML, <|im_end|>), plus the eos token.

    Found by rendering a one-word answer and reading the special tokens the template puts after it (or, when it
    puts none, the one after it when another turn follows: turn_end); generation configs, GGUF metadata and
    Modelfiles take their stop tokens from here so they match the training template.
    """
    last, follows = _tails(tokenizer)
    stops = _specials(tokenizer, last) or _specials(tokenizer, follows)[:1]
    if tokenizer.eos_token_id is not None:
        stops.append(tokenizer.eos_token_id)
    return sorted(set(stops))
