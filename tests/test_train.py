"""train and merge on a tiny random Llama: every method, determinism, kill -9 and SIGTERM resume, DDP, merge exactness."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
import torch
import yaml

from conftest import BIN, REPO, run
from tunemake import runtime
from tunemake.models.precision import training_precision
from tunemake.models.weights import frozen_in_autocast_dtype
from tunemake.models.weights import load as base_load
from tunemake.training import trainer
from tunemake.training.loss import assistant_loss

# Small enough for seconds per run, long enough to checkpoint, evaluate and resume mid-run.
QUICK = {
    "max_steps": 8,
    "batch_size": 4,
    "gradient_accumulation": 1,
    "checkpoint_steps": 2,
    "eval_steps": 4,
    "learning_rate": 5e-3,
}


def make_inputs(root: Path, model_dir: Path) -> Path:
    """results/base and results/tokenized for a tiny Llama on a slice of the default data, made by the real steps."""
    for name, rows in (("tool_calls.jsonl", 64), ("practical_qa.jsonl", 12)):
        lines = (REPO / "data" / "raw" / name).read_text().splitlines(keepends=True)[:rows]
        (root / "data" / "raw").mkdir(parents=True, exist_ok=True)
        (root / "data" / "raw" / name).write_text("".join(lines))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["base"]["model"] = str(model_dir)
    params["tokenize"]["max_length"] = 512
    params["prepare"]["replay"] = 0  # the steps run by hand here, without the replay step
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["tunemake", "base", "--out", "results/base"], root)
    run(["tunemake", "prepare", "--out", "results/data"], root)
    run(
        ["tunemake", "tokenize", "--base", "results/base", "--data", "results/data", "--out", "results/tokenized"], root
    )
    return root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory, tiny_llama_dir) -> Path:
    return make_inputs(tmp_path_factory.mktemp("train_inputs"), tiny_llama_dir)


@pytest.fixture(scope="module")
def inputs_64(tmp_path_factory, tiny_llama_64_dir) -> Path:
    """The same on the 64-wide model: 4-bit weights need rows of whole 64-value blocks."""
    return make_inputs(tmp_path_factory.mktemp("train_inputs_64"), tiny_llama_64_dir)


def train_cmd(inputs: Path, folder: Path, **overrides) -> list[str]:
    params = yaml.safe_load((inputs / "params.yaml").read_text())
    params["train"].update({**QUICK, **overrides})
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return [
        "tunemake",
        "train",
        "--params",
        str(folder / "params.yaml"),
        "--base",
        str(inputs / "results/base"),
        "--data",
        str(inputs / "results/tokenized"),
        "--out",
        str(folder / "out"),
        "--checkpoints",
        str(folder / "checkpoints"),
        "--log-file",
        str(folder / "train.log"),
    ]


def train(inputs: Path, folder: Path, **overrides) -> dict:
    run(train_cmd(inputs, folder, **overrides), inputs)
    return json.loads((folder / "out" / "summary.json").read_text())


def losses(folder: Path) -> list[float]:
    return [row["loss"] for row in json.loads((folder / "out" / "history.json").read_text())["train"]]


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory) -> Path:
    """One uninterrupted LoRA run that other tests compare against, started as Snakemake starts a rule's job: with
    OMP_NUM_THREADS=1."""
    folder = tmp_path_factory.mktemp("reference")
    os.environ["OMP_NUM_THREADS"] = "1"
    try:
        train(inputs, folder)
    finally:
        del os.environ["OMP_NUM_THREADS"]
    return folder


def test_lora_run_writes_adapter_history_summary_and_plots(reference):
    out = reference / "out"
    assert (out / "model" / "adapter_config.json").is_file() and (out / "model" / "adapter_model.safetensors").is_file()
    assert (out / "model" / "chat_template.jinja").is_file()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 8 and summary["method"] == "lora"
    rates = summary["cpu_matmul_gflops"]  # what auto precision was chosen by, measured in the training process
    assert all(rate > 0 for rate in rates.values())
    pays = runtime.cpu_bf16() and rates["bfloat16"] >= runtime.BF16_PAYS * rates["float32"]
    assert summary["precision"] == ("bf16" if pays else "fp32")
    assert "avx2" in summary["cpu"]["flags"] and summary["cpu"]["model"]  # figures from two CPUs are not comparable
    assert summary["threads"] == len(os.sched_getaffinity(0))  # every core, OMP_NUM_THREADS=1 notwithstanding
    assert 0 < summary["parameters"]["trainable_share"] < 0.05
    assert summary["batch"] == {"per_process": 4, "gradient_accumulation": 1, "effective": 4}
    assert summary["best"]["step"] in (0, 4, 8) and summary["tokens_seen"] > 0 and summary["peak_memory_mb"]["rss"] > 0
    # the few numbers dvc exp show lists (tunemake.evaluation.headline)
    assert json.loads((out / "headline.json").read_text()) == {
        "trainable_params": summary["parameters"]["trainable"],
        "best_val_loss": round(summary["best"]["val_loss"], 4),
        "train_minutes": round(summary["wall_seconds"] / 60, 2),
    }
    history = json.loads((out / "history.json").read_text())
    assert [row["step"] for row in history["train"]] == list(range(1, 9))
    assert [row["step"] for row in history["eval"]] == [0, 4, 8]
    assert all(row["tokens_per_second"] > 0 and row["grad_norm"] is not None for row in history["train"])
    assert history["train"][-1]["loss"] < history["train"][0]["loss"]  # lr 5e-3 on 8 steps does learn
    assert (out / "plots" / "train.tsv").read_text().splitlines()[0].split("\t")[:3] == ["step", "epoch", "loss"]
    assert not (reference / "checkpoints").exists()  # removed after success unless train.keep_checkpoints
    log = (reference / "train.log").read_text()
    assert "8/8 [" in log and "loss=" in log and "tok/s" in log  # the progress bar with ETA, in the log file


@pytest.mark.parametrize("method", ["qlora", "full", "freeze"])
def test_each_method_trains_and_saves_what_merge_needs(inputs, inputs_64, tmp_path, method):
    inputs = inputs_64 if method == "qlora" else inputs
    summary = train(inputs, tmp_path, method=method, max_steps=2, eval_steps=2, learning_rate=1e-4)
    model = tmp_path / "out" / "model"
    assert summary["steps"] == 2 and summary["method"] == method
    share = summary["parameters"]["trainable_share"]
    if method == "qlora":
        assert (model / "adapter_config.json").is_file() and 0 < share < 0.05
        assert summary["quantization"]["load_in_4bit"] and summary["quantization"]["bnb_4bit_quant_type"] == "nf4"
        assert summary["quantization"]["bnb_4bit_use_double_quant"]
    elif method == "full":
        assert (model / "model.safetensors").is_file() and share == 1.0
    else:  # both blocks of the tiny model and the tied head: all but the final norm
        assert (model / "model.safetensors").is_file() and 0.99 < share < 1.0
    merged = tmp_path / "merged"
    run(
        [
            "tunemake",
            "merge",
            "--params",
            str(tmp_path / "params.yaml"),
            "--base",
            str(inputs / "results/base"),
            "--trained",
            str(tmp_path / "out"),
            "--out",
            str(merged),
        ],
        inputs,
    )
    assert (merged / "model.safetensors").is_file()


def test_dora_rslora_an_8bit_optimizer_and_trackers_train_and_merge_exactly(inputs, tmp_path, monkeypatch):
    """Seed 003's optimizer (bitsandbytes' paged 8-bit AdamW: unpaged on CPU) and wandb, seed 004's DoRA and rsLoRA
    reach TRL and PEFT, and the merged DoRA model gives the adapted model's logits. The trackers write into the
    output, and the wandb key planted in the environment appears in no file the run writes."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    secret = "planted-wandb-key-7f3c9a1e5b2d"
    monkeypatch.setenv("WANDB_API_KEY", secret)
    monkeypatch.setenv("WANDB_MODE", "offline")
    lora = {"r": 8, "alpha": 16, "dropout": 0.0, "target_modules": "all-linear", "use_dora": True, "use_rslora": True}
    trackers = ["dvclive", "tensorboard", "wandb", "mlflow"]
    summary = train(
        inputs, tmp_path, max_steps=2, eval_steps=2, optimizer="paged_adamw_8bit", lora=lora, report_to=trackers
    )
    assert summary["optimizer"] == "bitsandbytes.optim.adamw.AdamW" and summary["config"]["lora"] == lora
    live = inputs / "dvclive"  # in the working directory, where DVC finds it (the step's output is git-ignored)
    loss = (live / "train" / "plots" / "metrics" / "loss.tsv").read_text().splitlines()
    assert loss[0] == "step\tloss" and len(loss) == 3  # steps 1 and 2
    assert yaml.safe_load((live / "dvc.yaml").read_text())["metrics"] == ["train/metrics.json"]
    tracking = inputs / "tracking" / "train"  # beside results/: event files and runs carry wall-clock times
    assert list((tracking / "tensorboard").glob("events.out.tfevents.*"))
    assert list((tracking / "wandb").glob("offline-run-*/run-*.wandb"))  # for `wandb sync`
    with sqlite3.connect(tracking / "mlflow.db") as mlflow_db:  # `mlflow ui --backend-store-uri sqlite:///...`
        assert mlflow_db.execute("select step from metrics where key = 'loss' order by step").fetchall() == [(1,), (2,)]
    written = [p for folder in (tmp_path, live, tracking) for p in folder.rglob("*") if p.is_file()]
    assert len(written) > 20 and not [p for p in written if secret.encode() in p.read_bytes()]
    config = json.loads((tmp_path / "out" / "model" / "adapter_config.json").read_text())
    assert config["use_dora"] and config["use_rslora"] and config["r"] == 8
    cmd = ["tunemake", "merge", "--params", str(tmp_path / "params.yaml"), "--base", str(inputs / "results/base")]
    run([*cmd, "--trained", str(tmp_path / "out"), "--out", str(tmp_path / "merged")], inputs)
    ids = torch.tensor([[1, 9690, 198, 2683, 314, 253, 5356, 2, 198, 1, 4093]])
    with torch.no_grad():
        base = base_load(inputs / "results/base", dtype=torch.float32)
        adapted = PeftModel.from_pretrained(base, tmp_path / "out" / "model")(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")(ids).logits
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=1e-5)


def test_freeze_trains_only_the_last_blocks_and_the_head(inputs, tmp_path):
    summary = train(
        inputs,
        tmp_path,
        method="freeze",
        freeze={"layers": 1, "lm_head": False},
        max_steps=2,
        eval_steps=2,
        warmup_ratio=0,
        keep_best=False,
    )
    from transformers import AutoModelForCausalLM

    base = base_load(inputs / "results/base")
    tuned = AutoModelForCausalLM.from_pretrained(tmp_path / "out" / "model")
    changed = {name for name, p in tuned.named_parameters() if not torch.equal(p, base.state_dict()[name])}
    assert changed and all(name.startswith("model.layers.1.") for name in changed)
    block = sum(p.numel() for p in base.model.layers[1].parameters())
    assert summary["parameters"]["trainable"] == block


def test_early_stopping_and_best_weights_follow_the_val_loss(tiny_llama_dir, tmp_path):
    from transformers import AutoModelForCausalLM, TrainerControl, TrainerState, TrainingArguments

    from tunemake.training.callbacks import KeepBest

    model = AutoModelForCausalLM.from_pretrained(tiny_llama_dir)
    keep = KeepBest(tmp_path / "best", patience=2)
    state, control = TrainerState(), TrainerControl()
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    for step, loss in ((0, 2.0), (2, 1.5), (4, 1.7), (6, 1.6)):
        state.global_step = step
        state.log_history.append({"step": step, "eval_loss": loss})
        keep.on_evaluate(args, state, control, model=model)
        assert control.should_training_stop == (step == 6)  # two evaluations without beating 1.5
    assert json.loads((tmp_path / "best" / "best.json").read_text()) == {"step": 2, "val_loss": 1.5}
    assert (tmp_path / "best" / "model.safetensors").is_file() and keep.stopped_early


def test_same_seed_gives_the_same_losses(inputs, reference, tmp_path):
    train(inputs, tmp_path)
    assert losses(tmp_path) == pytest.approx(losses(reference), abs=1e-6)


def start(cmd: list[str], cwd: Path) -> subprocess.Popen:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_checkpoint(folder: Path, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 120
    while not list(folder.glob("checkpoints/checkpoint-*/trainer_state.json")):
        assert process.poll() is None, f"training ended before its first checkpoint:\n{process.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "no checkpoint within 120 s"
        time.sleep(0.05)


def test_killed_run_resumes_from_its_checkpoint_and_ends_like_an_uninterrupted_one(inputs, reference, tmp_path):
    cmd = train_cmd(inputs, tmp_path, max_steps=8)
    process = start(cmd, inputs)
    wait_for_checkpoint(tmp_path, process)
    process.kill()  # SIGKILL: no chance to clean up
    process.wait()
    assert not (tmp_path / "out").exists()  # nothing half-written where the output goes
    run(cmd, inputs)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert 2 <= summary["resumed_from_step"] < 8
    assert "resuming from" in (tmp_path / "train.log").read_text()
    # RNG state and data order are restored with the checkpoint: the same curve to float rounding.
    assert losses(tmp_path) == pytest.approx(losses(reference), abs=1e-4)


def test_sigterm_saves_a_checkpoint_and_exits_nonzero_then_resumes(inputs, reference, tmp_path):
    cmd = train_cmd(inputs, tmp_path, checkpoint_steps=3)
    process = start(cmd, inputs)
    wait_for_checkpoint(tmp_path, process)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, stderr[-3000:]
    assert "Run the same command again to resume" in stderr
    stopped_at = int(re.search(r"got SIGTERM at step (\d+)", stderr).group(1))
    assert (tmp_path / "checkpoints" / f"checkpoint-{stopped_at}").is_dir()  # saved at the stop, off schedule too
    run(cmd, inputs)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["resumed_from_step"] == stopped_at and summary["steps"] == 8
    assert losses(tmp_path) == pytest.approx(losses(reference), abs=1e-4)


def test_a_checkpoint_cut_short_by_a_kill_is_skipped(tmp_path):
    for step, complete in ((2, True), (4, False)):
        (tmp_path / f"checkpoint-{step}").mkdir()
        if complete:
            (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text("{}")
    assert trainer.last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-2")
    assert trainer.last_complete_checkpoint(tmp_path / "missing") is None


def test_changed_parameters_do_not_resume_from_old_checkpoints(inputs, tmp_path):
    train(inputs, tmp_path, max_steps=2, keep_checkpoints=True)
    assert list(tmp_path.glob("checkpoints/checkpoint-2"))
    summary = train(inputs, tmp_path, max_steps=2, keep_checkpoints=True, learning_rate=1e-3)
    assert summary["resumed_from_step"] is None
    assert "starting over" in (tmp_path / "train.log").read_text()


def test_two_process_ddp_matches_one_process_with_the_same_global_batch(inputs, tmp_path):
    """2 x 2 sequences per step under torchrun (gloo) against 1 x 4. Random (not length-grouped) order, so both see
    the same rows at each step; the float differences of the all-reduce grow to about 1e-3 over 8 steps here."""
    one = tmp_path / "one"
    train(inputs, one, group_by_length=False)
    two = tmp_path / "two"
    run(
        [
            "torchrun",
            "--standalone",
            "--nproc-per-node",
            "2",
            "--no-python",
            *train_cmd(inputs, two, group_by_length=False, batch_size=2),
        ],
        inputs,
    )
    summary = json.loads((two / "out" / "summary.json").read_text())
    assert summary["processes"] == 2 and summary["batch"]["effective"] == 4
    assert losses(two) == pytest.approx(losses(one), abs=2e-3)
    assert losses(two)[:3] == pytest.approx(losses(one)[:3], abs=1e-4)


def test_merged_model_gives_the_logits_of_base_plus_adapter(inputs, reference, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run(
        [
            "tunemake",
            "merge",
            "--params",
            str(reference / "params.yaml"),
            "--base",
            str(inputs / "results/base"),
            "--trained",
            str(reference / "out"),
            "--out",
            str(tmp_path / "merged"),
        ],
        inputs,
    )
    ids = torch.tensor([[1, 9690, 198, 2683, 314, 253, 5356, 2, 198, 1, 4093]])
    base = base_load(inputs / "results/base", dtype=torch.float32)
    with torch.no_grad():
        before = base(ids).logits
        adapted = PeftModel.from_pretrained(base, reference / "out" / "model")(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged")(ids).logits
    assert not torch.allclose(before, adapted, atol=1e-4)  # the adapter does change the model
    torch.testing.assert_close(merged, adapted, atol=1e-5, rtol=1e-5)
    manifest = json.loads((tmp_path / "merged" / "manifest.json").read_text())
    generation = json.loads((tmp_path / "merged" / "generation_config.json").read_text())
    assert manifest["stop_tokens"] == ["<|im_end|>"] and generation["eos_token_id"] == manifest["stop_token_ids"]
    assert (tmp_path / "merged" / "chat_template.jinja").read_text() == (
        inputs / "results/base/chat_template.jinja"
    ).read_text()


def test_padding_free_batches_give_the_padded_loss(inputs):
    """Flattened sequences must not attend to each other: the loss equals the padded batch's."""
    import datasets
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    rows = list(
        datasets.load_from_disk(str(inputs / "results/tokenized/dataset"))["train"]
        .remove_columns("id")
        .select(range(4))
    )
    model = base_load(inputs / "results/base")
    results = {}
    for padding_free in (False, True):
        batch = DataCollatorForLanguageModeling(pad_token_id=2, padding_free=padding_free)(rows)
        with torch.no_grad():
            results[padding_free] = assistant_loss(model, dict(batch))[0].item()
    assert results[True] == pytest.approx(results[False], abs=1e-5)


def test_unknown_method_is_named_with_the_choices(inputs, tmp_path):
    result = run(train_cmd(inputs, tmp_path, method="dora"), inputs, check=False)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "train.method: Value error, unknown method 'dora'; use one of: freeze, full, lora, qlora" in result.stderr


def test_a_576_wide_4bit_layer_in_eval_mode_computes_its_dequantized_product():
    """SmolLM2-135M's rows are 576 wide (9 blocks of 64): bitsandbytes' CPU path in eval mode (the AVX-512 BF16
    packed path where the CPU has it) must give the product of the dequantized weights."""
    import bitsandbytes as bnb
    from bitsandbytes.functional import dequantize_4bit

    torch.manual_seed(0)
    layer = bnb.nn.Linear4bit(576, 192, bias=False, quant_type="nf4", compute_dtype=torch.float32)
    layer.weight = bnb.nn.Params4bit(torch.randn(192, 576) * 0.05, requires_grad=False, quant_type="nf4")
    layer = layer.to("cpu").eval()
    x = torch.randn(3, 576)
    with torch.no_grad():
        expected = x @ dequantize_4bit(layer.weight.data, layer.weight.quant_state).float().T
        assert torch.allclose(layer(x), expected, atol=2e-2, rtol=2e-2)


def test_training_uses_its_share_of_the_cores_whatever_omp_num_threads_says(monkeypatch):
    """Snakemake starts a rule with OMP_NUM_THREADS=1 (its default threads): torch must not train on one core."""
    from tunemake.runtime import threads, use_cores

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        use_cores()
        assert torch.get_num_threads() == threads()
        monkeypatch.setenv("LOCAL_WORLD_SIZE", str(threads()))  # torchrun: the cores split between the processes
        use_cores()
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(torch.cuda.is_available(), reason="on a GPU auto precision follows the GPU")
def test_auto_precision_takes_bf16_on_a_cpu_only_where_its_matmuls_measure_faster(monkeypatch):
    """The flags alone mislead: a Xeon with AVX-512 BF16 but its AMX hidden multiplies bfloat16 at half its float32
    rate. The rates below are three CPUs' measured ones (docs/benchmarks/training.md); the measurement itself is real on this CPU."""
    measured = runtime.cpu_matmul_rates()
    assert measured["float32"] > 0 and measured["bfloat16"] > 0
    assert runtime.cpu_bf16_pays() == (
        runtime.cpu_bf16() and measured["bfloat16"] >= runtime.BF16_PAYS * measured["float32"]
    )
    monkeypatch.setattr(runtime, "cpu_bf16", lambda: True)
    for fp32, bf16, chosen in ((248.4, 139.5, "fp32"), (177, 410, "bf16"), (343, 2041, "bf16")):
        monkeypatch.setattr(runtime, "cpu_matmul_rates", lambda: {"float32": fp32, "bfloat16": bf16})  # noqa: B023
        assert training_precision("auto") == chosen
    monkeypatch.setattr(runtime, "cpu_bf16", lambda: False)  # no bf16 instructions: emulated, never taken
    assert training_precision("auto") == "fp32"


def test_frozen_weights_in_bf16_give_the_same_losses_and_gradients_as_autocast_casting_them(tiny_llama_dir):
    """train's LoRA keeps its frozen Linear weights in bfloat16 so autocast stops re-casting them each step: the
    loss and every adapter gradient are bit for bit those of float32 frozen weights under the same autocast."""
    from peft import get_peft_model

    from tunemake.params.optimisation import LoraParams
    from tunemake.training.methods.lora import lora_config

    torch.manual_seed(0)
    ids = torch.randint(3, 1000, (2, 24))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": ids.clone()}
    results = []
    for cast in (False, True):
        torch.manual_seed(1)  # the same adapter initialisation
        model = get_peft_model(base_load(tiny_llama_dir, dtype=torch.float32), lora_config(LoraParams()))
        for name, weight in model.named_parameters():  # B starts at 0: every adapter adds something here
            if "lora_B" in name:
                torch.nn.init.normal_(weight, std=0.02)
        if cast:
            assert len(frozen_in_autocast_dtype(model, "bf16")) == 7 * model.config.num_hidden_layers  # no biases
            assert model.get_input_embeddings().weight.dtype == torch.float32  # tied to the head: kept
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss, _ = assistant_loss(model, dict(batch))
        loss.backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
        results.append((loss.item(), grads))
    (loss, grads), (cast_loss, cast_grads) = results
    assert loss == cast_loss
    assert grads.keys() == cast_grads.keys() and all(torch.equal(grads[n], cast_grads[n]) for n in grads)
    assert frozen_in_autocast_dtype(model, "fp32") == []
