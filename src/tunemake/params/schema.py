"""The whole of params.yaml: every section, for what reads them all (the Snakefile, sweeps, the report, tests).
A step imports only its own sections (tunemake.params.load), so editing one section's code re-runs only the steps
that read it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from tunemake.params import Strict, read, validated
from tunemake.params.align import AlignParams
from tunemake.params.base import BaseParams
from tunemake.params.bfcl import BfclParams
from tunemake.params.eval import EvalParams
from tunemake.params.gate import GateParams
from tunemake.params.gguf import GgufParams
from tunemake.params.merge import MergeParams
from tunemake.params.pairs import PairsParams
from tunemake.params.prepare import PrepareParams
from tunemake.params.reinforce import ReinforceParams
from tunemake.params.replay import ReplayParams
from tunemake.params.suite import SuiteParams
from tunemake.params.tokenize import TokenizeParams
from tunemake.params.train import TrainParams


class Params(Strict):
    base: BaseParams = BaseParams()
    suite: SuiteParams = SuiteParams()
    replay: ReplayParams = ReplayParams()
    prepare: PrepareParams
    pairs: PairsParams = PairsParams()
    tokenize: TokenizeParams = TokenizeParams()
    train: TrainParams = TrainParams()
    merge: MergeParams = MergeParams()
    align: AlignParams = AlignParams()
    reinforce: ReinforceParams = ReinforceParams()
    gguf: GgufParams = GgufParams()
    eval: EvalParams = EvalParams()
    bfcl: BfclParams = BfclParams()
    gate: GateParams = GateParams()


def load(path: str | Path = "params.yaml", overrides: Sequence[str] = ()) -> Params:
    """params.yaml, every section validated, with each `KEY=VALUE` of `overrides` applied first."""
    raw, where = read(path, overrides)
    return validated(raw, Params, where)
