"""llama.cpp from Python: converting a Hugging Face folder to GGUF with the pinned converter, the base model as a GGUF
(converted once per base, kept in the cache), loading a file, and answering many prompts at once, greedily, with
llama.cpp's batched decoding.

The base model's answers that are compared with the tuned model's go through llama.cpp too (the suite's, the
baseline step's): the base answers through the same engine as every GGUF it is compared with.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tunemake.cache import cache_root, make_once
from tunemake.errors import StepError
from tunemake.runtime import threads


def convert(converter: Path, model_dir: Path, out_file: Path, outtype: str) -> None:
    """llama.cpp's convert_hf_to_gguf.py (the converter step's output) on a Hugging Face folder, in a subprocess."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(converter / "gguf-py"), os.environ.get("PYTHONPATH")])),
    }
    cmd = [
        sys.executable,
        str(converter / "convert_hf_to_gguf.py"),
        str(model_dir),
        "--outtype",
        outtype,
        "--outfile",
        str(out_file),
    ]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise StepError(f"llama.cpp's converter failed on {model_dir}:\n{result.stderr.strip()[-3000:]}")


def base_gguf(base: Path, converter: Path) -> Path:
    """The pinned base (results/base) as a 16-bit GGUF (`auto`: bf16 weights stay bf16, others become f16), made
    once per base and converter and kept in the cache like the dequantised weights: results/ would make DVC store a
    copy of a file any machine can make again. Its chat template is results/base's (base.chat_template included)."""
    import llama_cpp

    from tunemake.models.weights import locate

    pin = (base / "manifest.json").read_text(encoding="utf-8") + llama_cpp.__version__
    target = cache_root() / "gguf" / hashlib.sha256(pin.encode()).hexdigest()[:16] / "base.gguf"

    def make() -> None:  # the suite and baseline can start together: one converts, the other waits
        weights = locate(base)
        with tempfile.TemporaryDirectory(dir=target.parent) as folder:
            folder = Path(folder)
            for file in weights.iterdir():  # the weights where they are; config, tokenizer, template from results/base
                if file.suffix == ".safetensors" or file.name.endswith(".safetensors.index.json"):
                    (folder / file.name).symlink_to(file.resolve())
            for file in base.iterdir():
                if file.name != "manifest.json":
                    shutil.copy2(file, folder / file.name)
            convert(converter, folder, folder / "base.gguf", "auto")
            (folder / "base.gguf").replace(target)

    return make_once(target, target.exists, make)


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


def shared_prefixes(encoded: list[list[int]]) -> list[tuple[int | None, int]]:
    """Per prompt, in lexicographic order of the token lists: the earlier prompt whose KV cache it copies (None for
    none) and how many of its leading tokens it takes from there. Sorted prompts share the most with their neighbour;
    each copies from the earliest one that shares as much, so copies chain only as deep as the prompts branch (system
    prompt, tools, question). Never a whole prompt: its last token is decoded in its own sequence, for its logits."""
    common = [0] + [
        next((n for n, (a, b) in enumerate(zip(before, after)) if a != b), min(len(before), len(after)))
        for before, after in zip(encoded, encoded[1:])
    ]
    plan: list[tuple[int | None, int]] = [(None, 0)]
    for k in range(1, len(encoded)):
        take = min(common[k], len(encoded[k]) - 1)
        source, shared = k - 1, common[k]
        while source > 0 and min(shared, common[source]) >= take:
            source, shared = source - 1, min(shared, common[source])
        plan.append((source, take) if take > 0 else (None, 0))
    return plan


def answer(llm, prompts: list[str], max_new_tokens: int, parallel: int = 32) -> tuple[list[str], list[bool]]:
    """Each rendered prompt's greedy answer, and whether it ended its turn before `max_new_tokens`.

    `parallel` prompts share one llama.cpp batch: each decoding step runs the weights once for all of them
    (llama-cpp-python's own API decodes one sequence at a time, hence the low-level calls). Reading the prompts is
    most of the work, and prompts share much of it (chat template, system prompt, tool list), so prompts are grouped
    in sorted order and a prompt's shared leading tokens are read once and their KV cache copied (shared_prefixes):
    on the default test split, 3,888 prompt tokens instead of 8,289. The answers can differ from decoding each prompt
    alone where 16-bit rounding breaks a near tie (other batch shapes, other rounding), as batching alone can;
    docs/benchmarks/evaluate.md says how often.
    """
    import llama_cpp as C
    import numpy as np

    encoded = [llm.tokenize(p.encode(), add_bos=False, special=True) for p in prompts]
    order = sorted(range(len(prompts)), key=lambda i: encoded[i])
    answers, stopped = [""] * len(prompts), [False] * len(prompts)
    vocab, n_vocab = C.llama_model_get_vocab(llm.model), llm.n_vocab()
    for start in range(0, len(order), parallel):
        group = order[start : start + parallel]
        tokens = [encoded[i] for i in group]
        plan = shared_prefixes(tokens)
        longest = max(map(len, tokens))
        params = C.llama_context_default_params()
        # Each sequence gets its own n_ctx / n_seq_max cells (not unified), so attention reads only its own tokens.
        params.n_ctx = len(group) * -(-(longest + max_new_tokens) // 256) * 256  # llama.cpp pads n_ctx to 256s
        params.n_batch, params.n_ubatch = sum(map(len, tokens)), 512
        params.n_seq_max, params.kv_unified = len(group), False
        params.n_threads = params.n_threads_batch = threads()
        # the loaded model's attention kernel (llama-cpp-python turns flash attention off; llama.cpp's default is
        # auto): another kernel rounds differently and can flip a near tie, and answers must equal the chat API's
        params.flash_attn_type = llm.context_params.flash_attn_type
        ctx = C.llama_init_from_model(llm.model, params)
        memory = C.llama_get_memory(ctx)
        batch = C.llama_batch_init(params.n_ctx, 0, 1)
        generated: list[list[int]] = [[] for _ in group]
        stream = list(range(len(group)))  # the llama.cpp sequence id (its own KV stream) of each prompt's tokens

        def decode(step: list[tuple[int, int, int, bool]]) -> list[tuple[int, int, int, bool]]:
            """One llama.cpp batch of (prompt, token, position, wants logits); the next token of each prompt that
            got logits and goes on."""
            step = sorted(step, key=lambda entry: stream[entry[0]])  # see compact
            for k, (s, token, pos, logits) in enumerate(step):
                batch.token[k], batch.pos[k], batch.n_seq_id[k], batch.logits[k] = token, pos, 1, logits
                batch.seq_id[k][0] = stream[s]
            batch.n_tokens = len(step)
            if C.llama_decode(ctx, batch) != 0:
                raise RuntimeError(f"llama_decode failed on a batch of {len(step)} tokens")
            following = []
            for k, (s, *_, logits) in enumerate(step):
                if not logits:
                    continue
                token = int(np.ctypeslib.as_array(C.llama_get_logits_ith(ctx, k), shape=(n_vocab,)).argmax())
                if C.llama_vocab_is_eog(vocab, token):
                    stopped[group[s]] = True
                    continue
                generated[s].append(token)
                if len(generated[s]) < max_new_tokens:
                    following.append((s, token, len(tokens[s]) + len(generated[s]) - 1, True))
            return following

        def compact(step: list[tuple[int, int, int, bool]]) -> None:
            """Move the unfinished answers' KV streams to the lowest sequence ids. With a stream per sequence,
            llama.cpp puts only consecutive sequence ids in one ubatch (split_equal), so each finished answer would
            split every later step into one more pass over the weights."""
            going_on = {s for s, *_ in step}
            holes = sorted(set(range(len(going_on))) - {stream[s] for s in going_on})
            for s, hole in zip(sorted(s for s in going_on if stream[s] >= len(going_on)), holes):
                C.llama_memory_seq_cp(memory, stream[s], hole, -1, -1)  # copied at the next llama_decode
                C.llama_memory_seq_rm(memory, stream[s], -1, -1)
                stream[s] = hole

        try:
            # The prompts in waves: a prompt that copies another's KV cache comes in the wave after that one (the
            # copy is made at the start of the next llama_decode), with logits for its last token only; then one
            # token per unfinished sequence per step.
            wave = [0] * len(group)
            for s, (source, _) in enumerate(plan):
                wave[s] = 0 if source is None else wave[source] + 1
            step = []
            for w in range(max(wave) + 1):
                prompt_tokens = []
                for s in (s for s in range(len(group)) if wave[s] == w):
                    source, shared = plan[s]
                    if source is not None:
                        C.llama_memory_seq_cp(memory, source, s, -1, -1)  # the whole stream, then its tail dropped
                        C.llama_memory_seq_rm(memory, s, shared, -1)
                    last = len(tokens[s]) - 1
                    prompt_tokens += [(s, tokens[s][pos], pos, pos == last) for pos in range(shared, last + 1)]
                step += decode(prompt_tokens)
            while step:
                compact(step)
                step = decode(step)
            for s, i in enumerate(group):
                answers[i] = llm.detokenize(generated[s]).decode("utf-8", errors="replace").strip()
        finally:
            C.llama_batch_free(batch)
            C.llama_free(ctx)
    return answers, stopped
