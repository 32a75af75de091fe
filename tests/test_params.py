"""params.yaml keeps its promise: a misspelt section, key or registry name fails before any step, naming it."""

from __future__ import annotations

import pytest
import yaml

from conftest import REPO, run
from tunemake.params import ParamsError
from tunemake.params.schema import Params, load


def write_params(tmp_path, edit) -> str:
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    edit(params)
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return str(path)


def test_a_misspelt_section_is_named_with_the_valid_ones(tmp_path):
    path = write_params(tmp_path, lambda p: p.update(trian=p.pop("train")))
    with pytest.raises(ParamsError) as err:
        load(path)
    assert (
        "trian: unknown section; valid here: base, suite, replay, prepare, pairs, tokenize, train, merge, align, reinforce, gguf, eval, bfcl, gate"
        in str(err.value)
    )


def test_a_misspelt_key_is_named_with_the_valid_keys_of_its_section(tmp_path):
    path = write_params(tmp_path, lambda p: p["train"]["lora"].update(rank=8))
    with pytest.raises(
        ParamsError,
        match=r"train.lora.rank: unknown key; valid here: r, alpha, dropout, target_modules, use_dora, use_rslora",
    ):
        load(path)
    path = write_params(tmp_path, lambda p: p["prepare"]["sources"][1].update(fromat="qa"))
    with pytest.raises(ParamsError, match=r"prepare.sources.1.fromat: unknown key; valid here: path, format, name"):
        load(path)


def test_every_train_and_align_field_names_what_it_sets_or_says_it_is_tunemakes_own():
    from tunemake.params.align import AlignParams
    from tunemake.params.train import TrainParams

    for section in (TrainParams, AlignParams):
        for name, field in section.model_fields.items():
            if name in {"method", "lora", "qlora", "freeze", "keep_best"}:
                continue  # registries and sub-sections, and tunemake's own output choices
            assert field.description and (
                "->" in field.description
                or "tunemake's own" in field.description
                or "EarlyStoppingCallback" in field.description
            ), f"{section.__name__}.{name}"


def test_a_misspelt_section_stops_both_front_doors_before_any_job(workspace):
    params = yaml.safe_load((workspace / "params.yaml").read_text())
    params["trian"] = params.pop("train")
    (workspace / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for command in (
        ["snakemake", "--profile", "local", "-n"],
        ["tunemake", "train", "--base", "b", "--data", "d", "--out", "o", "--checkpoints", "c"],
    ):
        result = run(command, workspace, check=False)
        assert result.returncode != 0, command
        assert "trian: unknown section; valid here: base, suite" in result.stdout + result.stderr, command
        assert "Traceback" not in result.stderr or command[0] == "snakemake", command
    assert not (workspace / "results").exists()


def test_a_quant_that_needs_an_importance_matrix_is_refused_without_one(tmp_path):
    path = write_params(tmp_path, lambda p: p["gguf"].update(quants=["Q8_0", "IQ2_M"], imatrix_quants=[]))
    with pytest.raises(ParamsError, match=r"gguf: .*\['IQ2_M'\] cannot be made without an importance matrix"):
        load(path)
    path = write_params(tmp_path, lambda p: p["gguf"].update(quants=["Q8_0"], imatrix_quants=["Q4_K_M"]))
    with pytest.raises(ParamsError, match=r"imatrix_quants lists \['Q4_K_M'\], which quants does not"):
        load(path)
    path = write_params(
        tmp_path, lambda p: p["gguf"].update(quants=["Q8_0", "IQ2_M", "Q4_0"], imatrix_quants=["Q8_0", "IQ2_M", "Q4_0"])
    )
    assert load(path).gguf.compared() == ["Q4_0"]  # Q8_0 ignores the matrix; IQ2_M cannot be made without it


def test_two_sources_with_one_label_are_refused_naming_both(tmp_path):
    """Row ids are label:line; two files named train.jsonl in two folders would mix their rows' ids."""
    path = write_params(
        tmp_path,
        lambda p: p["prepare"].update(
            sources=[{"path": "a/train.jsonl", "format": "qa"}, {"path": "b/train.jsonl", "format": "qa"}]
        ),
    )
    with pytest.raises(
        ParamsError, match=r"2 sources are labelled 'train' \(a/train.jsonl, b/train.jsonl\): give each"
    ):
        load(path)


def test_the_models_defaults_are_the_bundled_params_yaml():
    """A key left out of a user's params.yaml gets the value the bundled file documents: the two never drift."""
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    defaults = Params(prepare=raw["prepare"], pairs=raw["pairs"])  # the data sources have no default
    assert defaults.model_dump() == load(REPO / "params.yaml").model_dump()


def test_a_step_loads_only_its_sections_and_its_code_inputs_hold_only_theirs(tmp_path):
    from tunemake.commands import dag
    from tunemake.params import SECTIONS
    from tunemake.params import load as load_sections
    from tunemake.params.schema import Params
    from tunemake.params.train import TrainParams

    assert tuple(Params.model_fields) == SECTIONS
    path = write_params(tmp_path, lambda p: p["eval"].update(max_new_tokens=-1))  # invalid, but train does not read it
    loaded = load_sections(path, ["train.lora.r=4", "gate.min_score=1"], train=TrainParams)
    assert loaded.train.lora.r == 4 and not hasattr(loaded, "eval")
    with pytest.raises(ParamsError, match="trian: unknown section"):
        load_sections(path, ["trian.seed=1"], train=TrainParams)
    # Of the steps up to train, only train imports the train section's code: editing it re-runs nothing before.
    upstream = ("base", "replay", "suite", "prepare", "pairs", "tokenize", "baseline", "train")
    assert {step for step in upstream if "src/tunemake/params/train.py" in dag.code_files(step)} == {"train"}
