"""Loading a GGUF file with llama-cpp-python, and answering many prompts at once with llama.cpp's batched decoding."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from tunemake.runtime import threads


def load(path: Path, n_ctx: int = 512):
    import llama_cpp

    with open(os.devnull, "w") as null, contextlib.redirect_stderr(null):
        return llama_cpp.Llama(model_path=str(path), n_ctx=n_ctx, n_threads=threads(), verbose=False)


def file_template(llm):
    """The GGUF's own chat template as llama-cpp-python's chat completion applies it: call it with messages (and
    tools) for a ChatFormatterResponse whose .prompt is the text the model sees. None when the file has none."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if not template:
        return None
    text = lambda token: llm._model.token_get_text(token) if token != -1 else ""  # noqa: E731
    return Jinja2ChatFormatter(template, eos_token=text(llm.token_eos()), bos_token=text(llm.token_bos()))


def greedy(llm, prompts: list[str], max_new_tokens: int, parallel: int = 32) -> tuple[list[str], list[bool]]:
    """Each rendered prompt's greedy answer, and whether it ended its turn before `max_new_tokens`.

    `parallel` prompts share one llama.cpp batch: each decoding step runs the weights once for all of them
    (llama-cpp-python's own API decodes one sequence at a time, hence the low-level calls). On 2 CPU cores a 135M
    model is compute-bound, so it gains little there: 92 against 72 tok/s (benchmarks/general_answers.py). Prompts are grouped by length, so a group's sequences end at similar times.
    """
    import llama_cpp as C
    import numpy as np

    encoded = [llm.tokenize(p.encode(), add_bos=False, special=True) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    answers, stopped = [""] * len(prompts), [False] * len(prompts)
    vocab, n_vocab = C.llama_model_get_vocab(llm.model), llm.n_vocab()
    for start in range(0, len(order), parallel):
        group = order[start : start + parallel]
        longest = max(len(encoded[i]) for i in group)
        params = C.llama_context_default_params()
        # Each sequence gets its own n_ctx / n_seq_max cells (not unified), so attention reads only its own tokens.
        params.n_ctx = len(group) * -(-(longest + max_new_tokens) // 256) * 256  # llama.cpp pads n_ctx to 256s
        params.n_batch, params.n_ubatch = sum(len(encoded[i]) for i in group), 512
        params.n_seq_max, params.kv_unified = len(group), False
        params.n_threads = params.n_threads_batch = threads()
        # the loaded model's attention kernel (llama-cpp-python turns flash attention off; llama.cpp's default is
        # auto): another kernel rounds differently and can flip a near tie, and answers must equal the chat API's
        params.flash_attn_type = llm.context_params.flash_attn_type
        ctx = C.llama_init_from_model(llm.model, params)
        batch = C.llama_batch_init(params.n_ctx, 0, 1)
        try:
            # First the prompts, each its own sequence, with logits for its last token only; then one token per
            # unfinished sequence per step.
            step = [
                (s, token, pos, pos == len(encoded[i]) - 1)
                for s, i in enumerate(group)
                for pos, token in enumerate(encoded[i])
            ]
            generated: list[list[int]] = [[] for _ in group]
            while step:
                for k, (s, token, pos, logits) in enumerate(step):
                    batch.token[k], batch.pos[k], batch.n_seq_id[k], batch.logits[k] = token, pos, 1, logits
                    batch.seq_id[k][0] = s
                batch.n_tokens = len(step)
                if C.llama_decode(ctx, batch) != 0:
                    raise RuntimeError(f"llama_decode failed on a batch of {len(step)} tokens")
                outputs = [(k, s) for k, (s, *_, logits) in enumerate(step) if logits]
                step = []
                for k, s in outputs:
                    token = int(np.ctypeslib.as_array(C.llama_get_logits_ith(ctx, k), shape=(n_vocab,)).argmax())
                    if C.llama_vocab_is_eog(vocab, token):
                        stopped[group[s]] = True
                        continue
                    generated[s].append(token)
                    if len(generated[s]) < max_new_tokens:
                        step.append((s, token, len(encoded[group[s]]) + len(generated[s]) - 1, True))
            for s, i in enumerate(group):
                answers[i] = llm.detokenize(generated[s]).decode("utf-8", errors="replace").strip()
        finally:
            C.llama_batch_free(batch)
            C.llama_free(ctx)
    return answers, stopped
