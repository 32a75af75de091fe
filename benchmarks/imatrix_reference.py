"""tunemake's importance matrix (torch hooks) against llama.cpp's own `llama-imatrix`, same model, same tokens.

llama-imatrix cuts a text into chunks of n_ctx tokens and runs each through the GGUF; here the training
conversations the gguf step calibrates on are written out as that text, llama-imatrix runs on it, and tunemake's
collector runs on exactly the token chunks llama-imatrix makes of it (llama.cpp's tokenizer, BOS as it adds it).
Both matrices are then read as llama-quantize reads them (in_sum2 / counts) and compared per tensor. They differ
only by the engines' arithmetic (F16 weights there, the merged model's float32 here). Prints JSON.

Build llama-imatrix from the pinned sdist (what the converter step downloads):
    pip download --no-deps --no-binary :all: llama-cpp-python==0.3.36 && tar xzf llama_cpp_python-0.3.36.tar.gz
    cmake -S llama_cpp_python-0.3.36/vendor/llama.cpp -B build -DLLAMA_CURL=OFF && cmake --build build -t llama-imatrix
    python benchmarks/imatrix_reference.py --llama-imatrix build/bin/llama-imatrix
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from tunemake.llama import imatrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--llama-imatrix", type=Path, required=True)
    parser.add_argument("--results", type=Path, default=Path("results"))
    parser.add_argument("--tokens", type=int, default=16384, help="calibration tokens (whole chunks are used)")
    parser.add_argument("--ctx", type=int, default=512, help="llama-imatrix's chunk size (-c)")
    args = parser.parse_args()

    from llama_cpp import Llama
    from transformers import AutoTokenizer

    results = args.results
    f16 = next((results / "gguf").glob("model-F*.gguf"))
    converter = results / "converter"
    tokenizer = AutoTokenizer.from_pretrained(results / "merged")
    rows = imatrix.calibration_rows(results / "tokenized", args.tokens)
    text = "".join(tokenizer.decode(r) for r in rows)
    vocab = Llama(model_path=str(f16), vocab_only=True, verbose=False)
    tokens = vocab.tokenize(text.encode(), add_bos=True, special=True)  # as common_tokenize(add_special, parse_special)
    add_bos = vocab.metadata.get("tokenizer.ggml.add_bos_token") == "true"
    chunks = [tokens[i : i + args.ctx] for i in range(0, len(tokens) - args.ctx + 1, args.ctx)]
    if add_bos:
        chunks = [[vocab.token_bos(), *c[1:]] for c in chunks]

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "calibration.txt").write_text(text)
        reference = Path(tmp) / "reference.gguf"
        cmd = [
            str(args.llama_imatrix),
            *("-m", str(f16), "-f", str(Path(tmp) / "calibration.txt"), "-o", str(reference)),
            *("-c", str(args.ctx), "-b", str(args.ctx), "--chunks", str(len(chunks))),
            *("--parse-special", "--no-ppl", "-ngl", "0"),
        ]
        subprocess.run(cmd, check=True, capture_output=True)
        theirs = imatrix.read(reference, converter)
        entries, _ = imatrix.gguf_entries(imatrix.collect(results / "merged", chunks), f16, converter)
        ours_file = Path(tmp) / "ours.gguf"
        imatrix.write(ours_file, entries, converter, "reference check", len(chunks), args.ctx)
        ours = imatrix.read(ours_file, converter)

    relative = {
        name: float(np.linalg.norm(ours[name] - theirs[name]) / np.linalg.norm(theirs[name]))
        for name in sorted(set(ours) & set(theirs))
    }
    correlation = {name: float(np.corrcoef(ours[name], theirs[name])[0, 1]) for name in relative}
    worst = max(relative, key=relative.get)
    print(
        json.dumps(
            {
                "model": str(f16),
                "chunks": len(chunks),
                "tokens": len(chunks) * args.ctx,
                "tensors": {"ours": len(ours), "llama_imatrix": len(theirs), "both": len(relative)},
                "only_llama_imatrix": sorted(set(theirs) - set(ours)),
                "only_ours": sorted(set(ours) - set(theirs)),
                "relative_l2_difference": {
                    "median": float(np.median(list(relative.values()))),
                    "max": relative[worst],
                    "max_tensor": worst,
                },
                "pearson_min": min(correlation.values()),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
