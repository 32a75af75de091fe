"""The importance matrix the gguf step quantizes with, computed from the training split with torch.

llama.cpp's quantizer weights each column's rounding error by how large that column's inputs are in use: the mean
of the squared activations entering the weight, per input column (what its `llama-imatrix` tool collects inside
GGML). The same numbers come from forward pre-hooks on the merged model's linear layers in transformers, over the
conversations the model was tuned on (rendered with the training template, as tokenize stored them), so no C++
build is needed. The matrix is written in llama.cpp's GGUF imatrix format (`<tensor>.in_sum2`, `<tensor>.counts`),
which `llama-quantize --imatrix` reads too, and handed to llama_model_quantize as its C array.

Left out: mixture-of-experts weights (the converter stacks the experts into one 3-D tensor; they are quantized
without an imatrix, and `missing` lists them), and output.weight, which llama-imatrix also skips by default.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import time
from pathlib import Path

import numpy as np

from tunemake.errors import StepError

log = logging.getLogger("tunemake")
BATCH_TOKENS = 8192  # padded tokens per forward pass: a few hundred MB of activations for a small model


def gguf_py(converter: Path):
    """The gguf-py package of the pinned llama.cpp (the converter step's copy), as the converter itself uses."""
    if str(converter / "gguf-py") not in sys.path:
        sys.path.insert(0, str(converter / "gguf-py"))
    import gguf

    return gguf


def calibration_rows(dataset: Path, max_tokens: int) -> list[list[int]]:
    """Training conversations in a fixed random order until max_tokens (the last one cut to fit)."""
    import datasets
    import pyarrow.compute as pc

    train = datasets.load_from_disk(str(dataset / "dataset"))["train"]
    lengths = pc.list_value_length(train.data.column("input_ids")).to_numpy()
    order = np.random.default_rng(0).permutation(len(train))
    taken, total = [], 0
    for i in order:
        if total >= max_tokens:
            break
        taken.append(int(i))
        total += int(lengths[i])
    rows = [list(ids) for ids in train.select(sorted(taken))["input_ids"]]
    if total > max_tokens:
        rows[-1] = rows[-1][: len(rows[-1]) - (total - max_tokens)]
    return [r for r in rows if r]


def compute(merged: Path, data: Path, converter: Path, f16: Path, target: Path, max_tokens: int):
    """The imatrix from up to max_tokens of the training split, written to target; returns what the file holds (as
    llama-quantize reads it: each tensor's mean squared input per column) and a summary for sizes.json."""
    started = time.perf_counter()
    rows = calibration_rows(data, max_tokens)
    entries, missing = gguf_entries(collect(merged, rows), f16, converter)
    if not entries:
        raise StepError(
            f"imatrix: no weight of {merged} maps to a tensor of {f16.name}; set gguf.imatrix_quants: [] for this model"
        )
    tokens = sum(len(r) for r in rows)
    write(target, entries, converter, f"{data.name}/dataset train split", len(rows), -(-tokens // len(rows)))
    summary = {
        "file": target.name,
        "tokens": tokens,
        "conversations": len(rows),
        "entries": len(entries),
        "missing": missing,
        "seconds": round(time.perf_counter() - started, 1),
    }
    log.info(
        "gguf: importance matrix from %d training tokens (%d conversations): %d tensors, %d block weights without "
        "data, %.1fs",
        tokens,
        len(rows),
        len(entries),
        len(missing),
        summary["seconds"],
    )
    return read(target, converter), summary


def collect(merged: Path, rows: list[list[int]]) -> dict[str, tuple[np.ndarray, int]]:
    """Per linear layer inside the decoder: (sum over tokens of each input column squared, tokens), in float64."""
    import torch

    from tunemake.models.weights import load

    device = "cuda" if torch.cuda.is_available() else "cpu"  # the gguf step runs on a GPU node in cluster profiles
    model = load(merged, dtype=torch.float32 if device == "cpu" else torch.bfloat16).to(device).eval()
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}
    mask: list[torch.Tensor] = []  # the current batch's real tokens (padding never counts)

    def hook(name):
        def pre_hook(module, args):
            x = args[0][mask[0]].float()
            sums[name] = sums.get(name, 0) + x.square().sum(0).to(torch.float64)
            counts[name] = counts.get(name, 0) + x.shape[0]

        return pre_hook

    output = model.get_output_embeddings()
    handles = [
        module.register_forward_pre_hook(hook(name))
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and module is not output
    ]
    rows = sorted(rows, key=len)
    with torch.inference_mode():
        start = 0
        while start < len(rows):
            end = start + 1
            while end < len(rows) and len(rows[end]) * (end - start + 1) <= BATCH_TOKENS:
                end += 1
            batch = rows[start:end]
            width = max(len(r) for r in batch)
            ids = torch.zeros(len(batch), width, dtype=torch.long)
            attention = torch.zeros(len(batch), width, dtype=torch.long)
            for i, r in enumerate(batch):
                ids[i, : len(r)] = torch.tensor(r)
                attention[i, : len(r)] = 1
            ids, attention = ids.to(device), attention.to(device)
            mask[:] = [attention.bool()]
            model.base_model(input_ids=ids, attention_mask=attention)  # the logits feed no quantized weight
            start = end
    for handle in handles:
        handle.remove()
    return {name: (sums[name].cpu().numpy(), counts[name]) for name in sums}


def gguf_entries(collected: dict, f16: Path, converter: Path) -> tuple[dict[str, tuple[np.ndarray, int]], list[str]]:
    """The collected sums under the GGUF's tensor names (gguf-py's own HF -> GGUF map for the file's architecture),
    each checked against that tensor's column count; and the quantizable block weights left without data."""
    gguf = gguf_py(converter)
    reader = gguf.GGUFReader(f16)

    def field(key):
        part = reader.fields[key]
        return part.parts[part.data[0]]

    arch = bytes(field("general.architecture")).decode()
    by_name = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}
    names = gguf.get_tensor_name_map(by_name[arch], int(field(f"{arch}.block_count")[0]))
    columns = {t.name: int(t.shape[0]) for t in reader.tensors if len(t.shape) >= 2}
    entries = {}
    for module, (sums, count) in collected.items():
        name = names.get_name(f"{module}.weight", try_suffixes=(".weight",))
        if name not in columns:
            continue  # a layer the converter drops or fuses differently: quantized without data
        if columns[name] != sums.size:
            raise StepError(
                f"imatrix: {module} has {sums.size} input columns but {name} in {f16.name} has {columns[name]}; "
                "the converter reshaped it. Set gguf.imatrix_quants: [] for this model and report the architecture."
            )
        entries[name] = (sums, count)
    missing = sorted(n for n in columns if n.startswith("blk.") and n not in entries)
    return entries, missing


def write(path: Path, entries: dict, converter: Path, dataset: str, chunks: int, chunk_size: int) -> None:
    """llama.cpp's GGUF imatrix file: per tensor, in_sum2 [columns x 1] and counts [1 x 1], in float32. Its chunks
    are our conversations (llama-imatrix cuts its text into chunks of n_ctx tokens instead)."""
    gguf = gguf_py(converter)
    writer = gguf.GGUFWriter(path, arch="imatrix")
    writer.add_type(gguf.GGUFType.IMATRIX)
    writer.add_array(gguf.Keys.IMatrix.DATASETS, [dataset])
    writer.add_uint32(gguf.Keys.IMatrix.CHUNK_COUNT, chunks)
    writer.add_uint32(gguf.Keys.IMatrix.CHUNK_SIZE, chunk_size)
    for name in sorted(entries):
        sums, count = entries[name]
        writer.add_tensor(f"{name}.in_sum2", sums.astype(np.float32).reshape(1, -1))
        writer.add_tensor(f"{name}.counts", np.array([[count]], dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def read(path: Path, converter: Path) -> dict[str, np.ndarray]:
    """Each tensor's mean squared input per column, as llama-quantize computes it from the file (in_sum2 / counts)."""
    gguf = gguf_py(converter)
    tensors = {t.name: np.asarray(t.data, dtype=np.float64) for t in gguf.GGUFReader(path).tensors}
    return {
        name.removesuffix(".in_sum2"): (sums / tensors[name.replace(".in_sum2", ".counts")].reshape(-1, 1)).ravel()
        for name, sums in tensors.items()
        if name.endswith(".in_sum2")
    }


class QuantizeArray:
    """The imatrix as llama_model_quantize_params.imatrix: {name, data, size} entries ending in a null entry. The
    numpy buffers must outlive the quantize call, so this object owns them."""

    def __init__(self, means: dict[str, np.ndarray]):
        import llama_cpp

        self._names = [name.encode() for name in means]
        self._data = [np.ascontiguousarray(m, dtype=np.float32) for m in means.values()]
        self.array = (llama_cpp.llama_model_imatrix_data * (len(means) + 1))()
        for entry, name, data in zip(self.array, self._names, self._data):
            entry.name = name
            entry.data = data.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            entry.size = data.size
