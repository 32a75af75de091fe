"""bfcl: the Berkeley Function Calling Leaderboard as an outside yardstick, asked through the served path.

BFCL's own test rows and its own AST checker come from PyPI's bfcl-eval (installed without its dependencies: it pins
numpy 1.26 and a dozen API clients, none of which its checker needs; the tree-sitter pins are what it imports). Each
GGUF is asked as an application asks it, like evaluate asks it: llama-server --jinja, the row's question and its
functions as OpenAI `tools` (BFCL's own conversion for OpenAI-style models: dots in names become underscores, BFCL's
types become JSON Schema), through the openai client; the server's parsed `tool_calls` are the answer, scored by
BFCL's checker as BFCL scores a function-calling model. `irrelevance` offers functions that do not fit the request:
right there is no call.

Three files answer: the base (its 16-bit GGUF, tunemake.llama.llamacpp.base_gguf, scored once per base and settings and
kept in the cache), the tuned model (its unquantized GGUF) and the shipped quant. Per category: correct/total with a
95% interval, and the paired differences tuned - base and shipped - base over the same rows.

Output: summary.json (what the gate and the report read) and answers.jsonl (every row's answer and BFCL's verdict).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import statistics
import sys
import time
import types
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path

from tunemake.cache import cache_root, make_once
from tunemake.data.jsonl import atomic_dir, write_json, write_jsonl
from tunemake.evaluation import general
from tunemake.evaluation.stats import interval, paired_interval
from tunemake.params import load as load_params
from tunemake.params.bfcl import BfclParams

log = logging.getLogger("tunemake")
MODEL = "tunemake"  # the name BFCL's checker looks its settings up under


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for name, what in (("base", "base"), ("converter", "converter"), ("gguf", "gguf")):
        parser.add_argument(f"--{name}", type=Path, required=True, help=f"the {what} step's output")
    parser.add_argument("--out", type=Path, required=True, help="summary.json and answers.jsonl")


def main(args: argparse.Namespace) -> None:
    run(load_params(args.params, args.set, bfcl=BfclParams).bfcl, args.base, args.converter, args.gguf, args.out)


def _bfcl():
    """bfcl_eval's data folder, checker and OpenAI conversion, imported without its model registry (which imports
    every API client it supports) and with its scratch folders in the cache instead of site-packages."""
    os.environ.setdefault("BFCL_PROJECT_ROOT", str(cache_root() / "bfcl"))
    registry = types.ModuleType("bfcl_eval.constants.model_config")
    # the one setting the checker reads: names were sent with "_" for "." (OpenAI's name rules), as BFCL sends them
    registry.MODEL_CONFIG_MAPPING = {MODEL: types.SimpleNamespace(underscore_to_dot=True)}
    sys.modules.setdefault("bfcl_eval.constants.model_config", registry)
    import bfcl_eval
    from bfcl_eval.constants.enums import Language, ModelStyle
    from bfcl_eval.constants.type_mappings import GORILLA_TO_OPENAPI
    from bfcl_eval.eval_checker.ast_eval.ast_checker import ast_checker
    from bfcl_eval.model_handler.utils import convert_to_tool

    def tools(functions: list[dict]) -> list[dict]:
        return convert_to_tool(functions, GORILLA_TO_OPENAPI, ModelStyle.OPENAI_COMPLETIONS)

    def check(entry: dict, calls: list[dict], answer: list, category: str) -> dict:
        return ast_checker(entry["function"], calls, answer, Language.PYTHON, category, MODEL)

    return Path(bfcl_eval.__file__).parent / "data", tools, check


def entries(category: str, rows: int | None) -> list[tuple[dict, list | None]]:
    """The category's rows, `rows` of them evenly spaced (all when None), each with its possible answers (None for
    irrelevance, which has none)."""
    data, _, _ = _bfcl()
    read = lambda path: [json.loads(line) for line in path.read_text().splitlines() if line.strip()]  # noqa: E731
    questions = read(data / f"BFCL_v4_{category}.json")
    answers = {}
    if category != "irrelevance":
        answers = {a["id"]: a["ground_truth"] for a in read(data / "possible_answer" / f"BFCL_v4_{category}.json")}
    picked = general.spread(len(questions), rows or len(questions))
    return [(questions[i], answers.get(questions[i]["id"])) for i in picked]


def judge(category: str, entry: dict, calls: list[dict] | None, answer: list | None) -> dict:
    """BFCL's verdict on one answer: calls as BFCL decodes a function-calling model's ({name: arguments}), None when
    they could not be decoded. Irrelevance: right when there is no call (an undecodable one counts as none, as in
    BFCL); otherwise BFCL's AST checker against the possible answers."""
    if category == "irrelevance":
        return {"valid": not calls}
    if calls is None:
        return {"valid": False, "error": ["the call's arguments are not JSON"]}
    _, _, check = _bfcl()
    result = check(entry, calls, answer, category)
    return {"valid": bool(result["valid"]), **({"error": result.get("error")} if not result["valid"] else {})}


def answers(gguf: Path, asked: dict[str, list], params: BfclParams) -> dict[str, list]:
    """Each category's rows asked of llama-server --jinja on `gguf` through the openai client: the calls as BFCL
    decodes them (None when a call's arguments are not JSON)."""
    from openai import OpenAI

    from tunemake.llama.llamaserver import serving

    _, tools, _ = _bfcl()

    with serving(gguf, parallel=params.parallel, ctx_size=params.ctx_size) as url:
        client = OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0, timeout=600)

        def ask(entry: dict) -> list[dict] | None:
            message = (
                client.chat.completions.create(
                    model=gguf.name,
                    messages=entry["question"][0],
                    tools=tools(entry["function"]),
                    temperature=0.0,
                    max_tokens=params.max_new_tokens,
                )
                .choices[0]
                .message
            )
            try:
                return [{c.function.name: json.loads(c.function.arguments)} for c in message.tool_calls or []]
            except json.JSONDecodeError:
                return None

        with ThreadPoolExecutor(params.parallel) as pool:
            return {category: list(pool.map(ask, (e for e, _ in rows))) for category, rows in asked.items()}


def base_answers(base: Path, converter: Path, asked: dict[str, list], params: BfclParams) -> dict[str, list]:
    """The base's answers, kept in the cache per base, settings and versions: every run of one base reuses them."""
    from tunemake.llama.llamacpp import base_gguf

    key = hashlib.sha256(
        json.dumps(
            [
                (base / "manifest.json").read_text(),
                params.model_dump(exclude={"enabled"}),
                version("bfcl-eval"),
                version("llama-cpp-python"),
            ]
        ).encode()
    ).hexdigest()[:16]
    path = cache_root() / "bfcl" / f"base-{key}.json"
    make_once(path, path.is_file, lambda: write_json(path, answers(base_gguf(base, converter), asked, params)))
    return json.loads(path.read_text())


def summary(asked: dict[str, list], verdicts: dict[str, dict[str, list[dict]]]) -> dict:
    """Per category and model: correct/total and accuracy in points with its 95% interval; the paired differences
    against the base over the same rows."""
    out = {}
    for category in asked:
        scores = {model: [float(v["valid"]) for v in verdicts[model][category]] for model in verdicts}
        out[category] = {
            "rows": len(asked[category]),
            "models": {
                model: {
                    "correct": int(sum(values)),
                    "total": len(values),
                    "accuracy": round(100 * statistics.mean(values), 1),
                    "ci95": interval(values),
                }
                for model, values in scores.items()
            },
            "minus_base": {
                model: {
                    "value": round(100 * (statistics.mean(scores[model]) - statistics.mean(scores["base"])), 1),
                    "ci95": paired_interval(scores[model], scores["base"]),
                }
                for model in scores
                if model != "base"
            },
        }
    return out


def run(params: BfclParams, base: Path, converter: Path, gguf: Path, out: Path) -> dict:
    if not params.enabled:
        with atomic_dir(out) as tmp:
            write_json(tmp / "summary.json", {"enabled": False})
            write_jsonl(tmp / "answers.jsonl", [])
        log.info("bfcl: off (bfcl.enabled: false)")
        return {"enabled": False}
    sizes = json.loads((gguf / "sizes.json").read_text())
    asked = {category: entries(category, params.rows) for category in params.categories}
    started = time.perf_counter()
    got = {"base": base_answers(base, converter, asked, params)}
    files = {"tuned": sizes["unquantized"], "shipped": sizes["shipped"]}
    for model, quant in dict.fromkeys(files.items()) if files["tuned"] != files["shipped"] else [("tuned", None)]:
        got[model] = answers(gguf / sizes["files"][quant]["file"], asked, params)
    got.setdefault("shipped", got["tuned"])
    verdicts = {
        model: {
            category: [judge(category, e, calls, a) for (e, a), calls in zip(asked[category], got[model][category])]
            for category in asked
        }
        for model in got
    }
    result = {
        "enabled": True,
        "files": {"base": "base 16-bit GGUF", **{m: sizes["files"][q]["file"] for m, q in files.items()}},
        "categories": summary(asked, verdicts),
        "bfcl_eval": version("bfcl-eval"),
        "seconds": round(time.perf_counter() - started, 1),
    }
    with atomic_dir(out) as tmp:
        write_json(tmp / "summary.json", result)
        write_jsonl(
            tmp / "answers.jsonl",
            (
                {
                    "id": entry["id"],
                    "category": category,
                    **{model: {"calls": got[model][category][i], **verdicts[model][category][i]} for model in got},
                }
                for category in asked
                for i, (entry, _) in enumerate(asked[category])
            ),
        )
    for category, scores in result["categories"].items():
        log.info(
            "bfcl: %s: %s",
            category,
            ", ".join(f"{m} {s['correct']}/{s['total']}" for m, s in scores["models"].items()),
        )
    return result
