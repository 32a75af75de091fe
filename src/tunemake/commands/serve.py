"""serve: the shipped GGUF behind llama.cpp's OpenAI-compatible llama-server (chat completions with tools).

The server (tunemake.llama.llamaserver) runs with --jinja: the GGUF's own chat template renders the messages and the
`tools`, and the server parses the model's tool calls into `tool_calls`. It listens on 127.0.0.1 unless --host says
otherwise; with TUNEMAKE_API_KEY set, every request but /health needs it as a bearer token (handed over in the
environment, so it shows in no process list or log).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

from tunemake.errors import StepError
from tunemake.llama.llamaserver import serving

log = logging.getLogger("tunemake")
KEY_ENV = "TUNEMAKE_API_KEY"


def shipped(gguf_dir: Path, gate: Path | None = None) -> Path:
    """The GGUF the gguf step ships (sizes.json `shipped`, the file the gate judges), warning when the gate did not
    say deploy."""
    sizes = gguf_dir / "sizes.json"
    if not sizes.is_file():
        raise StepError(
            f"no GGUF to serve: {sizes} does not exist. Make it with `snakemake --profile local {gguf_dir}` "
            "(or `dvc repro gguf`), or name a file with --model."
        )
    chosen = json.loads(sizes.read_text())
    path = gguf_dir / chosen["files"][chosen["shipped"]]["file"]
    if not path.is_file():
        raise StepError(f"no GGUF to serve: {sizes} ships {path.name}, which is not in {gguf_dir}")
    if gate is not None and gate.is_file():
        verdict = json.loads(gate.read_text())["verdict"]
        if verdict != "deploy":
            log.warning("serve: the gate's verdict on this model is %s, not deploy (%s)", verdict.upper(), gate)
    return path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", type=Path, help="a GGUF file to serve (default: the one the gguf step ships)")
    parser.add_argument("--gguf", type=Path, default=Path("results/gguf"), help="the gguf step's output")
    parser.add_argument("--gate", type=Path, default=Path("results/gate.json"), help="the gate's verdict, if any")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=8080, help="(default: 8080)")
    parser.add_argument("--parallel", type=int, default=4, help="requests decoded together (slots)")
    parser.add_argument("--ctx-size", type=int, default=4096, help="context tokens per slot")
    parser.add_argument(
        "--server-log", type=Path, default=Path("logs/serve/llama-server.log"), help="llama-server's own log"
    )


def main(args: argparse.Namespace) -> None:
    gguf = args.model or shipped(args.gguf, args.gate)
    key = os.environ.get(KEY_ENV)
    if not key and args.host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("serve: listening on %s without an API key; set %s to require one", args.host, KEY_ENV)
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # `kill`, docker stop: stop the server as Ctrl-C
    with (
        contextlib.suppress(KeyboardInterrupt),
        serving(
            gguf,
            host=args.host,
            port=args.port,
            parallel=args.parallel,
            ctx_size=args.ctx_size,
            api_key=key,
            log_file=args.server_log,
            ready_timeout=600,  # a large model takes a while to load
        ) as url,
    ):
        log.info(
            "serve: %s at %s/v1 (OpenAI API: chat/completions with tools), %s; llama-server's log: %s. Ctrl-C stops.",
            gguf,
            url,
            f"API key required ({KEY_ENV})" if key else "no API key",
            args.server_log,
        )
        while _running(url):
            time.sleep(1)


def _running(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=5):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return False
