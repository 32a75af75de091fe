"""A Snakemake sweep (`--config sweep=KEY:V1,V2`) and the `--set` it runs each point with: what a point is, and the
mistakes refused before any job. The sweep itself runs for real in tests/test_frontdoors.py (the DVC repro test)."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from conftest import REPO, run
from tunemake.commands.sweep import parse
from tunemake.params import ParamsError
from tunemake.params.schema import load

PARAMS = REPO / "params.yaml"


def test_each_value_is_a_point_and_params_yamls_own_value_is_its_run():
    sweep = parse("train.lora.r:4,16,8,4", PARAMS)  # params.yaml has r: 16
    assert sweep.values == [4, 16, 8] and sweep.default == 16
    assert sweep.points == ["", "sweep/train.lora.r=4/", "sweep/train.lora.r=8/"]
    assert sweep.set_args("sweep/train.lora.r=8/") == " --set train.lora.r=8" and sweep.set_args("") == ""
    assert sweep.run_args() == (
        "--run 16 results --run 4 results/sweep/train.lora.r=4 --run 8 results/sweep/train.lora.r=8"
    )
    config = {"train": {"lora": {"r": 16, "alpha": 32}}, "gate": {}}
    assert sweep.section(config, "sweep/train.lora.r=4/", "train") == {"lora": {"r": 4, "alpha": 32}}
    assert config["train"]["lora"]["r"] == 16  # a point's section is a copy
    methods = parse("train.method:lora,qlora", PARAMS)
    assert methods.points == ["", "sweep/train.method=qlora/"] and methods.outputs() == ["results/sweep/train.method"]
    assert parse(None, PARAMS).points == [""] and parse(None, PARAMS).outputs() == []


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("prepare.seed:1,2", "prepare.seed is read before training, so every point would share it"),
        ("train.lora.rank:4,8", "train.lora.rank: unknown key; valid here: r, alpha"),
        ("train.lora.r:4,0", "train.lora.r: Input should be greater than 0"),
        ("train.method:lora,lorra", "unknown method 'lorra'"),
        ("train.lora.r", "write sweep=KEY:VALUE,VALUE..."),
        ("train.lora.target_modules:q_proj/k_proj", "cannot name a folder"),
    ],
)
def test_a_bad_sweep_is_refused_naming_the_key_and_the_fix(spec, message):
    with pytest.raises(ParamsError, match=message.replace(".", r"\.").replace("'", ".")):
        parse(spec, PARAMS)


def test_set_overrides_one_parameter_and_a_misspelt_key_is_named():
    assert load(PARAMS, ["train.lora.r=8", "train.learning_rate=1e-4"]).train.lora.r == 8
    with pytest.raises(ParamsError, match=r"with --set train\.lr=1e-4.*\n  train\.lr: unknown key"):
        load(PARAMS, ["train.lr=1e-4"])
    with pytest.raises(ParamsError, match=r"write KEY=VALUE"):
        load(PARAMS, ["train.lora.r"])


def test_every_step_takes_set_on_its_command_line(tmp_path):
    failed = run(["tunemake", "base", "--set", "base.modle=x", "--out", str(tmp_path / "base")], REPO, check=False)
    assert failed.returncode == 1 and "base.modle: unknown key; valid here: model, revision" in failed.stderr


def test_a_sweep_points_trackers_write_to_a_folder_of_its_own(tmp_path, monkeypatch):
    """Points train side by side: each tracker gets tracking/sweep/KEY=VALUE/<step>, never params.yaml's run's."""
    from tunemake.params.train import TrainParams
    from tunemake.training.trainer import tracking_callbacks

    monkeypatch.chdir(tmp_path)
    for name in ("TENSORBOARD_LOGGING_DIR", "WANDB_DIR", "MLFLOW_TRACKING_URI"):
        monkeypatch.delenv(name, raising=False)
    params = TrainParams(report_to=["tensorboard", "mlflow"])
    tracking_callbacks(params, "train", Path("results/sweep/train.lora.r=4/train"), resumed=False)
    assert os.environ["TENSORBOARD_LOGGING_DIR"] == "tracking/sweep/train.lora.r=4/train/tensorboard"
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///tracking/sweep/train.lora.r=4/train/mlflow.db"
    tracking_callbacks(params, "train", Path("results/train"), resumed=False)  # the next run in this process
    assert os.environ["TENSORBOARD_LOGGING_DIR"] == "tracking/train/tensorboard"


def test_a_fresh_checkout_plans_every_step_with_and_without_a_sweep(workspace):
    """{point} is empty for params.yaml's run: its constraint must still match the empty string."""
    from conftest import STEPS
    from tunemake.commands import dag

    assert dag.planned(workspace) == set(STEPS)
    swept = run(["snakemake", "-n", "--config", "sweep=train.lora.r:4"], workspace).stdout
    assert re.search(r"^train\s+2$", swept, flags=re.M) and re.search(r"^sweep\s+1$", swept, flags=re.M)
    assert re.search(r"^baseline\s+1$", swept, flags=re.M)  # the base is scored once for both points
    by_eval = run(["snakemake", "-n", "--config", "sweep=eval.max_new_tokens:4"], workspace).stdout
    assert re.search(r"^baseline\s+2$", by_eval, flags=re.M)  # each point scores the base with its own settings
