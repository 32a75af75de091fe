"""tunemake's command line: one subcommand per pipeline step, run identically by Snakemake rules and DVC stages."""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from tunemake import params as params_mod
from tunemake.errors import StepError


def _base(args, p) -> None:
    from tunemake import base

    base.run(p.base, args.out)


def _prepare(args, p) -> None:
    from tunemake import prepare

    prepare.run(p.prepare, args.out)


def _tokenize(args, p) -> None:
    from tunemake import tokenize

    tokenize.run(p.tokenize, args.base, args.data, args.out)


def _train(args, p) -> None:
    from tunemake import train

    train.run(p.train, args.base, args.data, args.out, args.checkpoints)


def _merge(args, p) -> None:
    from tunemake import merge

    merge.run(p.merge, args.base, args.trained, args.out)


def _converter(args, p) -> None:
    from tunemake import converter

    converter.run(args.out)


def _gguf(args, p) -> None:
    from tunemake import gguf

    gguf.run(p.gguf, args.merged, args.converter, args.out)


def _evaluate(args, p) -> None:
    from tunemake import evaluate

    evaluate.run(p.eval, args.base, args.merged, args.gguf, args.data, args.tokenized, args.out)


def _report(args, p) -> None:
    from tunemake import report

    report.run(p, args.params, args.data, args.trained, args.gguf, args.eval, args.out)


def _gate(args, p) -> None:
    from tunemake import gate

    gate.run(p.gate, args.verdict, args.out)


def _sync(args, p) -> None:
    from tunemake import sync

    sync.run(args.root)


def _launch(args, p) -> None:
    from tunemake import launch

    step = args.step_command[1:] if args.step_command[:1] == ["--"] else args.step_command
    if not step:
        raise StepError("tunemake launch: give the step to run after --, e.g. tunemake launch --nodes 2 -- tunemake train ...")
    launch.run(step, args.nodes, args.pytorchjob)


def _show_tokens(args, p) -> None:
    from tunemake import tokenize

    print(tokenize.show(args.data, args.base, args.split, args.row))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tunemake", description=__doc__)
    steps = parser.add_subparsers(dest="step", required=True, metavar="STEP")

    def step(name: str, handler, help: str, *, needs_params: bool = True) -> argparse.ArgumentParser:
        sub = steps.add_parser(name, help=help, description=help)
        sub.set_defaults(handler=handler, needs_params=needs_params)
        sub.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameter file (default: params.yaml)")
        sub.add_argument("--log-file", dest="log", type=Path, help="also write the step's log to this file")
        return sub

    sub = step("base", _base, "pin the base model: tokenizer, chat template, config and a manifest of its weights")
    sub.add_argument("--out", type=Path, required=True)

    sub = step("prepare", _prepare, "validate, normalise, de-duplicate and split the raw JSONL sources")
    sub.add_argument("--out", type=Path, required=True)

    sub = step("tokenize", _tokenize, "apply the chat template and mask everything but assistant tokens")
    sub.add_argument("--base", type=Path, required=True)
    sub.add_argument("--data", type=Path, required=True)
    sub.add_argument("--out", type=Path, required=True)

    sub = step("train", _train, "fine-tune the base model on the tokenized data (also under torchrun for DDP)")
    sub.add_argument("--base", type=Path, required=True)
    sub.add_argument("--data", type=Path, required=True)
    sub.add_argument("--out", type=Path, required=True)
    sub.add_argument("--checkpoints", type=Path, required=True,
                     help="resumable checkpoints, outside --out so a failed or killed run keeps them")

    sub = step("merge", _merge, "merge the adapter into the float base weights (full weights are re-saved)")
    sub.add_argument("--base", type=Path, required=True)
    sub.add_argument("--trained", type=Path, required=True)
    sub.add_argument("--out", type=Path, required=True)

    sub = step("converter", _converter, "fetch llama.cpp's GGUF converter from the pinned llama-cpp-python sdist",
               needs_params=False)
    sub.add_argument("--out", type=Path, required=True)

    sub = step("gguf", _gguf, "convert the merged model to GGUF, quantize, load-check the template; write a Modelfile")
    sub.add_argument("--merged", type=Path, required=True)
    sub.add_argument("--converter", type=Path, required=True)
    sub.add_argument("--out", type=Path, required=True)

    sub = step("evaluate", _evaluate, "score base vs tuned vs each GGUF on the held-out test split")
    for name in ("base", "merged", "gguf", "data", "tokenized", "out"):
        sub.add_argument(f"--{name}", type=Path, required=True)

    sub = step("report", _report, "HTML + Markdown report with plots and the deploy / iterate / abort verdict")
    for name in ("data", "trained", "gguf", "eval", "out"):
        sub.add_argument(f"--{name}", type=Path, required=True)

    sub = step("gate", _gate, "fail when gate.enforce is on and the verdict is not deploy")
    sub.add_argument("--verdict", type=Path, required=True)
    sub.add_argument("--out", type=Path, required=True)

    sub = step("sync", _sync, "after a run or a DVC checkout/pull, make Snakemake and DVC agree (runs no step)",
               needs_params=False)
    sub.add_argument("--root", type=Path, default=Path("."), help="the project (default: the current directory)")

    sub = step("launch", _launch, "run a step on the GPUs and nodes of this job: torchrun, srun + torchrun, or a PyTorchJob",
               needs_params=False)
    sub.add_argument("--nodes", type=int, default=1)
    sub.add_argument("--pytorchjob", type=Path, default=Path("k8s/pytorchjob.yaml"),
                     help="image, volume and NCCL settings for multi-node training on Kubernetes")
    sub.add_argument("step_command", nargs=argparse.REMAINDER, metavar="-- STEP ...")

    sub = step("show-tokens", _show_tokens, "print one tokenized row token by token with its label", needs_params=False)
    sub.add_argument("--data", type=Path, default=Path("results/tokenized"))
    sub.add_argument("--base", type=Path, default=Path("results/base"))
    sub.add_argument("--split", default="train", choices=["train", "val", "test"])
    sub.add_argument("--row", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if args.log:
        args.log.parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(args.log, mode="w"))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers, force=True)
    log = logging.getLogger("tunemake")
    started = time.perf_counter()
    try:
        p = params_mod.load(args.params) if args.needs_params else None
        args.handler(args, p)
    except (StepError, params_mod.ParamsError) as err:
        log.error("tunemake %s failed:\n%s", args.step, err)
        return getattr(err, "exit_code", 1)
    log.info("tunemake %s finished in %.1fs", args.step, time.perf_counter() - started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
