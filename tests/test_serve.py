"""tunemake serve: llama-server built from the pinned llama-cpp-python sdist, queried with the official openai client.

The first test that needs the server builds it (minutes on a fresh machine; cached afterwards in the tunemake cache).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from conftest import BIN
from tunemake.commands import serve
from tunemake.data import chat, tool_template
from tunemake.errors import StepError
from tunemake.evaluation import heldout, summaries
from tunemake.llama import llamaserver, sdist
from tunemake.llama.llamacpp import convert
from tunemake.steps import evaluate

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "enum": ["Austin", "Oslo"]}},
            "required": ["city"],
        },
    },
}
QUESTION = [{"role": "user", "content": "What is the weather in Oslo?"}]


CALL = '<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"}}\n</tool_call><|im_end|>'


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, tiny_llama_dir, converter_dir) -> Path:
    """The tiny Llama taught to answer QUESTION with a call to get_weather, as an F32 GGUF carrying SmolLM2's template
    as tunemake extends it (tool_template): llama-server parses tool calls only in a format the file's template
    writes. Taught, because a random model rambles: even with tool_choice="required" llama.cpp's grammar lets text
    come first."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root = tmp_path_factory.mktemp("serve")
    shutil.copytree(tiny_llama_dir, root / "hf")
    tokenizer = AutoTokenizer.from_pretrained(root / "hf")
    assert tool_template.extend_tools(tokenizer)  # SmolLM2's own template renders no tools
    tokenizer.save_pretrained(root / "hf")
    prompt = tokenizer.apply_chat_template(QUESTION, tools=[WEATHER], add_generation_prompt=True, tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(CALL, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([prompt_ids + answer_ids])
    labels = torch.tensor([[-100] * len(prompt_ids) + answer_ids])
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_pretrained(root / "hf", dtype=torch.float32)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = model(input_ids=ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert loss.item() < 0.05, loss.item()
    model.save_pretrained(root / "hf")
    convert(converter_dir, root / "hf", root / "tiny.gguf", "f32")
    return root / "tiny.gguf"


def ask(url: str, key: str = "none", **extra):
    from openai import OpenAI

    client = OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=120)
    return client.chat.completions.create(
        model="tiny", messages=QUESTION, tools=[WEATHER], temperature=0, max_tokens=64, **extra
    )


def test_the_openai_client_gets_tool_calls_parsed_by_the_server(tiny_gguf):
    """The call the model writes comes back parsed, as tool_calls with finish_reason tool_calls, whether the model
    chooses to call (auto) or must (required: a grammar from the tool's schema constrains the call)."""
    build = json.loads((llamaserver.server_binary().parent / "build.json").read_text())
    assert build["version"] == version("llama-cpp-python") and "-DLLAMA_USE_PREBUILT_UI=OFF" in build["cmake_flags"]
    with llamaserver.serving(tiny_gguf) as url:
        responses = [ask(url), ask(url, tool_choice="required")]
    for response in responses:
        choice = response.choices[0]
        assert choice.finish_reason == "tool_calls", choice
        (call,) = choice.message.tool_calls
        assert call.type == "function" and call.function.name == "get_weather"
        assert json.loads(call.function.arguments) == {"city": "Oslo"}
        assert not choice.message.content and "<tool_call>" not in str(choice.message)


def test_the_server_renders_a_request_with_tools_as_training_did(tiny_gguf):
    """llama.cpp's own template engine (the server's /apply-template) and transformers render a conversation with
    tools, calls and a tool result to the same tokens: the model is served the format it trained on. (One known
    difference: llama.cpp reads a call's arguments back from JSON text, so a float with nothing after the point in an
    earlier call, 161.0, is written 161.)"""
    from transformers import AutoTokenizer

    from tunemake.steps.gguf import SAMPLE, SAMPLE_TOOLS

    tokenizer = AutoTokenizer.from_pretrained(tiny_gguf.parent / "hf")
    trained = tokenizer.apply_chat_template(SAMPLE, tools=SAMPLE_TOOLS, add_generation_prompt=True, tokenize=False)
    request = {"messages": chat.openai_messages(SAMPLE), "tools": SAMPLE_TOOLS}
    with llamaserver.serving(tiny_gguf) as url:
        served = urllib.request.urlopen(
            urllib.request.Request(
                f"{url}/apply-template", json.dumps(request).encode(), {"Content-Type": "application/json"}
            )
        )
        prompt = json.loads(served.read())["prompt"]
    assert "<tools>" in prompt and "<tool_response>" in prompt
    ids = lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]  # noqa: E731
    assert ids(prompt) == ids(trained), (prompt, trained)


def test_evaluate_asks_a_gguf_through_the_server_and_scores_the_parsed_tool_calls(tiny_gguf, tmp_path):
    """evaluate's GGUF pass as users call the file: each row's messages and tools through the openai client to
    llama-server, the parsed calls scored; the suite's rendered prompts through its completions endpoint. On the
    taught tiny model it answers as llama-cpp-python does in-process."""
    rows = [
        {"id": f"r{i}", "prompt": QUESTION, "tools": [WEATHER], "reference": CALL, "reference_calls": calls}
        for i, calls in enumerate(
            [[{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]] * 2
            + [[{"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Austin"}}}]]
        )
    ]
    rows.append({"id": "plain", "prompt": QUESTION, "tools": [], "reference": "Sunny.", "reference_calls": []})
    prompt = chat.Renderer(AutoTokenizer.from_pretrained(tiny_gguf.parent / "hf")).render(
        QUESTION, None, add_generation_prompt=True
    )
    suite = {"prompts": [prompt, prompt + "Well"], "max_new_tokens": 8}
    params = evaluate.EvalParams(max_new_tokens=48, served_parallel=2, speed_rows=1)
    served = heldout.score_gguf(str(tiny_gguf), str(tiny_gguf.parent / "hf"), rows, params.model_dump(), suite)
    local = heldout.score_gguf(
        str(tiny_gguf), str(tiny_gguf.parent / "hf"), rows, {**params.model_dump(), "served": False}, suite
    )
    assert served["calls"][:3] == [CALL.removesuffix("<|im_end|>")] * 3 and served["answered_with_tool_calls"] == 3
    summary, per_row = summaries.summarise(rows, served["answers"], served["stopped"], served["calls"])
    assert [s["tool_calls"]["exact_match"] for s in per_row[:3]] == [1.0, 1.0, 0.0]  # r2 wanted Austin
    assert served["answers"][:3] == local["answers"][:3] and served["stopped"][:3] == local["stopped"][:3]
    # offered no tools, the server parses no call: the answer is its text (an untaught prompt: the tiny model rambles)
    assert served["calls"][3] == "" and served["answers"][3]
    assert served["general"]["answers"] == local["general"]["answers"]
    assert served["general"]["stopped"] == local["general"]["stopped"]
    assert len(served["timings"]) == 1 and "calls" not in local
    # an unparsed call counts as none: the text still shows it, the score does not take it
    text = CALL.removesuffix("<|im_end|>")
    _, per_row = summaries.summarise(rows[:1], [text], [True], [""])
    assert per_row[0]["tool_calls"]["exact_match"] == 0.0


def listening_addresses(port: int) -> set[str]:
    """The local addresses of the TCP sockets listening on `port` (/proc/net/tcp, tcp6: hex address, state 0A)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:
                found.add(address)
    return found


def test_loopback_only_and_the_api_key_is_required_never_shown(tiny_gguf, tmp_path):
    from openai import AuthenticationError

    key = "sk-test-7f3a9c"
    log = tmp_path / "server.log"
    with llamaserver.serving(tiny_gguf, api_key=key, log_file=log) as url:
        port = int(url.rsplit(":", 1)[1])
        assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, and no other address
        with pytest.raises(AuthenticationError) as refused:
            ask(url, key="wrong", max_completion_tokens=1)
        assert refused.value.status_code == 401
        with pytest.raises(urllib.error.HTTPError) as bare:  # no Authorization header at all
            urllib.request.urlopen(f"{url}/v1/models")
        assert bare.value.code == 401
        assert ask(url, key=key, tool_choice="required").choices[0].finish_reason == "tool_calls"
        servers = [p for p in Path("/proc").glob("[0-9]*") if f"--port\0{port}\0".encode() in _cmdline(p)]
        assert len(servers) == 1 and key.encode() not in _cmdline(servers[0])
    assert "--api-key" not in log.read_text() and key not in log.read_text()


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


def test_tunemake_serve_serves_the_shipped_gguf_until_stopped(tiny_gguf, tmp_path):
    """The command line: the file sizes.json ships, found in the gguf step's output; SIGTERM (as Ctrl-C) stops it
    and its server."""
    gguf = tmp_path / "results" / "gguf"
    gguf.mkdir(parents=True)
    (gguf / "model-Q8_0.gguf").symlink_to(tiny_gguf)
    sizes = {"shipped": "Q8_0", "files": {"Q8_0": {"file": "model-Q8_0.gguf"}, "F32": {"file": "model-F32.gguf"}}}
    (gguf / "sizes.json").write_text(json.dumps(sizes))
    port = llamaserver.free_port()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", serve.KEY_ENV: "k"}
    process = subprocess.Popen(
        ["tunemake", "serve", "--port", str(port), "--parallel", "2", "--ctx-size", "1024"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _healthy(url):
            assert process.poll() is None, process.stdout.read()
            time.sleep(0.3)
        response = ask(url, key="k", tool_choice="required")
        assert response.choices[0].message.tool_calls[0].function.name == "get_weather"
        ready = ""
        while f"at {url}/v1" not in ready:  # tunemake says where it serves once the server is ready
            line = process.stdout.readline()
            assert line, ready  # not ended before saying so
            ready += line
        request = urllib.request.Request(f"{url}/props", headers={"Authorization": "Bearer k"})
        with urllib.request.urlopen(request) as props:
            served = json.loads(props.read())
        assert served["total_slots"] == 2 and served["model_path"].endswith("model-Q8_0.gguf")
        assert served["default_generation_settings"]["n_ctx"] == 1024  # --ctx-size is per slot
    finally:
        process.send_signal(signal.SIGTERM)
        output = process.communicate(timeout=30)[0]
    assert process.returncode == 0, output
    assert not [p for p in Path("/proc").glob("[0-9]*") if f"--port\0{port}\0".encode() in _cmdline(p)]
    output = ready + output
    assert f"model-Q8_0.gguf at {url}/v1" in output and "API key required" in output
    assert (tmp_path / "logs" / "serve" / "llama-server.log").is_file()


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def test_clear_errors_no_gguf_port_in_use_and_a_server_that_dies(tiny_gguf, tmp_path):
    missing = subprocess.run(
        [BIN / "tunemake", "serve", "--gguf", str(tmp_path / "nowhere")], capture_output=True, text=True
    )
    assert missing.returncode == 1
    assert f"{tmp_path / 'nowhere' / 'sizes.json'} does not exist" in missing.stderr
    assert "snakemake --profile local" in missing.stderr and "--model" in missing.stderr

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(StepError, match=f"cannot listen on 127.0.0.1:{taken.getsockname()[1]}"):
            with llamaserver.serving(tiny_gguf, port=taken.getsockname()[1]):
                pass

    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + b"\0" * 64)
    with pytest.raises(StepError, match="llama-server exited with code") as died:
        with llamaserver.serving(broken, log_file=tmp_path / "broken.log"):
            pass
    assert "broken.gguf" in str(died.value) and str(tmp_path / "broken.log") in str(died.value)


def test_a_failed_build_names_its_log_and_leaves_no_entry(tmp_path, monkeypatch):
    """Without cmake on PATH: a one-line error pointing at the build log, and nothing in the cache taken for built."""
    archive = sdist.sdist(version("llama-cpp-python"))  # the shared download, made by the converter tests too
    monkeypatch.setenv("TUNEMAKE_CACHE", str(tmp_path / "cache"))
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / archive.parent.name).symlink_to(archive.parent)
    monkeypatch.setenv("PATH", str(tmp_path / "no-tools"))
    with pytest.raises(StepError, match="building llama-server from the llama-cpp-python==") as failed:
        llamaserver.server_binary()
    build_log = tmp_path / "cache" / f"llama-server-{version('llama-cpp-python')}.build.log"
    assert str(failed.value).endswith(f"the build log is {build_log}") and "\n" not in str(failed.value)
    assert "cmake not found" in build_log.read_text()
    assert not (tmp_path / "cache" / f"llama-server-{version('llama-cpp-python')}").exists()
