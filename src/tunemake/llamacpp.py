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

from tunemake.cache import cache_root
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
    from filelock import FileLock

    from tunemake.weights import locate

    pin = (base / "manifest.json").read_text(encoding="utf-8") + llama_cpp.__version__
    target = cache_root() / "gguf" / hashlib.sha256(pin.encode()).hexdigest()[:16] / "base.gguf"
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{target}.lock"):  # the suite and baseline can start together; one converts, the other waits
        if target.exists():
            return target
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
    return target


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


def answer(llm, prompts: list[str], max_new_tokens: int, parallel: int = 32) -> tuple[list[str], list[bool]]:
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
