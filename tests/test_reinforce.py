"""reinforce (GRPO) on the tiny model, from the real merged SFT model: the rewards on known answers, user rewards
checked when params load, the step's outputs, resume after kill -9, and the pipeline unchanged when it is off."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import BIN, REPO, run
from tunemake.models.weights import final_model
from tunemake.params import ParamsError
from tunemake.params.schema import load as load_params
from tunemake.training.rewards import no_call_score, reward_function, tool_call_score

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather for a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}, "unit": {"type": "string"}},
                "required": ["city"],
            },
        },
    },
    {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}}},
]
REFERENCE = [{"function": {"name": "get_weather", "arguments": {"city": "Austin"}}}]


def call(name: str, **arguments) -> str:
    return "<tool_call>\n" + json.dumps({"name": name, "arguments": arguments}) + "\n</tool_call>"


@pytest.mark.parametrize(
    "answer, score",
    [
        (call("get_weather", city="Austin"), 1.0),  # exact
        (call("get_weather", city=" austin."), 1.0),  # values compared as evaluate compares them
        (call("get_weather", city="Boston"), 0.6),  # parseable, right function, required argument, wrong value
        (call("get_weather", unit="celsius"), 0.4),  # the required argument missing
        (call("get_weather", city="Austin") + "\n" + call("get_time"), 0.7),  # right call and one too many
        (call("get_time"), 0.2),  # the wrong function
        ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Austin"}\n</tool_call>', 0.0),  # bad JSON
        ('<tool_call>{"arguments": {"city": "Austin"}}</tool_call>', 0.0),  # no function name
        ("It is sunny in Austin.", 0.0),  # no call at all
        ("", 0.0),
    ],
)
def test_tool_call_reward_gives_exact_calls_1_and_states_partial_credit(answer, score):
    assert tool_call_score(answer, REFERENCE, TOOLS) == pytest.approx(score)


@pytest.mark.parametrize(
    "answer, score",
    [
        ("None of the functions I can call does that.", 1.0),
        (call("get_weather", city="Austin"), 0.0),
        ("<tool_call>{not json</tool_call>", 0.0),  # an attempted call counts, parseable or not
        ("   ", 0.0),  # saying nothing is no answer
    ],
)
def test_no_call_reward_scores_restraint(answer, score):
    assert no_call_score(answer) == score


def test_rewards_apply_to_their_rows_only_as_trl_calls_them():
    """TRL passes the dataset's columns by keyword (reference_calls and tools stored as JSON text); a reward that
    does not apply to a row says None, which TRL leaves out of that reward's mean."""
    columns = {
        "prompts": ["p1", "p2", "p3"],
        "completions": [call("get_weather", city="Austin"), "No function fits.", "Sure."],
        "kind": ["tool_call", "no_call", "text"],
        "reference_calls": [json.dumps(REFERENCE), "[]", "[]"],
        "tools": [json.dumps(TOOLS), json.dumps(TOOLS), "[]"],
        "completion_ids": [[1], [2], [3]],
        "trainer_state": None,
    }
    tool_call, no_call = reward_function("tool_call"), reward_function("no_call")
    assert (tool_call.__name__, no_call.__name__) == ("tool_call", "no_call")  # TRL logs rewards/NAME/mean
    assert tool_call(**columns) == [1.0, None, None]
    assert no_call(**columns) == [None, 1.0, None]


USER_REWARDS = '''
def brevity(prompts, completions, **kwargs):
    """A user's reward: shorter completions score higher (something a random tiny model varies on)."""
    return [1.0 / (1 + len(c)) for c in completions]


def positional(completions):
    return [0.0 for _ in completions]
'''


def test_user_rewards_are_checked_when_params_load(tmp_path, monkeypatch):
    (tmp_path / "my_rewards.py").write_text(USER_REWARDS)
    monkeypatch.chdir(tmp_path)  # the project root: where user modules are imported from
    params = {"prepare": {"sources": [{"path": "x.jsonl", "format": "messages"}]}}

    def load(*rewards):
        (tmp_path / "params.yaml").write_text(yaml.safe_dump({**params, "reinforce": {"rewards": list(rewards)}}))
        return load_params(tmp_path / "params.yaml")

    assert load("tool_call", "my_rewards:brevity").reinforce.rewards == ["tool_call", "my_rewards:brevity"]
    brevity = reward_function("my_rewards:brevity")
    assert brevity.__name__ == "brevity" and brevity(prompts=["p"], completions=["abc"], kind=["text"]) == [0.25]
    for spec, message in (
        ("no_such_module:f", "no module 'no_such_module'"),
        ("my_rewards:missing", "module my_rewards has no function 'missing'"),
        ("my_rewards:positional", "wrong signature positional(completions)"),
        ("brevity", "use one of tool_call, no_call or a function as module:function"),
    ):
        with pytest.raises(ParamsError, match="reinforce.rewards.0") as err:
            load(spec)
        assert message in str(err.value), str(err.value)
    with pytest.raises(ParamsError, match="multiple of num_generations"):
        load_params(tmp_path / "params.yaml", ["reinforce.rewards=[tool_call]", "reinforce.batch_size=6"])


# Seconds per run; long enough to checkpoint and resume mid-run. A random tiny model almost never calls a tool, so
# the brevity reward gives its completions' groups a spread to learn from.
QUICK = {
    "enabled": True,
    "rewards": ["tool_call", "no_call", "user_rewards:brevity"],
    "max_steps": 4,
    "num_generations": 2,
    "batch_size": 4,
    "max_completion_length": 8,
    "checkpoint_steps": 2,
    "learning_rate": 5e-3,
}


def reinforce_cmd(sft: Path, folder: Path, **overrides) -> list[str]:
    params = yaml.safe_load((sft / "params.yaml").read_text())
    params["reinforce"] = {**QUICK, **overrides}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (sft / "user_rewards.py").write_text(USER_REWARDS)  # the commands run in sft: the project root
    return [
        *("tunemake", "reinforce", "--params", str(folder / "params.yaml")),
        *("--merged", str(sft / "results/merged"), "--data", str(sft / "results/data")),
        *("--out", str(folder / "out"), "--checkpoints", str(folder / "checkpoints")),
        *("--log-file", str(folder / "reinforce.log")),
    ]


def curve(folder: Path, key: str) -> list[float]:
    return [row[key] for row in json.loads((folder / "out" / "history.json").read_text())["train"]]


@pytest.fixture(scope="module")
def reinforced(sft, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reinforced")
    run(reinforce_cmd(sft, folder), sft)
    return folder


def test_reinforce_writes_the_merged_grpo_model_its_adapter_and_reward_curves(sft, reinforced):
    out = reinforced / "out"
    assert (out / "model" / "model.safetensors").is_file() and (out / "adapter" / "adapter_config.json").is_file()
    assert final_model(sft / "results/merged", None, out) == out / "model"  # what gguf and evaluate ship
    history = json.loads((out / "history.json").read_text())["train"]
    assert [row["step"] for row in history] == [1, 2, 3, 4]
    for key in ("loss", "reward", "reward_std", "kl", "completions/mean_length", "tokens_seen"):
        assert all(row[key] is not None for row in history), key
    for name in ("tool_call", "no_call", "brevity"):  # each reward's mean and spread per step
        assert all(f"rewards/{name}/mean" in row and f"rewards/{name}/std" in row for row in history), name
    assert all(0 < row["rewards/brevity/mean"] <= 1 for row in history)
    assert all(row["completions/mean_length"] <= QUICK["max_completion_length"] for row in history)
    assert history[0]["kl"] == 0  # the adapter starts at zero: the policy is the starting model
    header = (out / "plots" / "train.tsv").read_text().splitlines()[0].split("\t")
    assert {"reward", "kl", "rewards/tool_call/mean", "completions/mean_length"} <= set(header)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["enabled"] and summary["steps"] == 4 and summary["start"] == str(sft / "results/merged")
    assert summary["generation"] == "transformers generate" and summary["prompts"]["tool_call"] > 0
    assert summary["prompts"]["no_call"] > 0
    metrics = json.loads((out / "headline.json").read_text())
    assert metrics["grpo_reward_first"] == round(history[0]["reward"], 4)
    assert metrics["grpo_reward_last"] == round(history[-1]["reward"], 4)
    line = (reinforced / "reinforce.log").read_text()
    assert "reward=" in line and "kl=" in line and "length=" in line and "<" in line  # progress with its ETA
    assert not (reinforced / "checkpoints").exists()


def test_killed_reinforce_resumes_from_its_checkpoint_and_ends_like_an_uninterrupted_one(sft, reinforced, tmp_path):
    """Sampling draws from the random state the checkpoint saved, so a resumed run samples the same completions: the
    rewards and the losses after the checkpoint agree with the uninterrupted run's to float rounding."""
    cmd = reinforce_cmd(sft, tmp_path)
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "HOME": str(Path.home()), "HF_HUB_OFFLINE": "1"}
    env["PYTHONPATH"] = str(REPO / "src")  # this checkout's code, wherever the environment's install points
    process = subprocess.Popen(cmd, cwd=sft, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob("checkpoints/checkpoint-*/trainer_state.json")):
            assert process.poll() is None, f"reinforce ended before its checkpoint:\n{process.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
    finally:
        process.kill()  # SIGKILL: no chance to clean up (and no run left behind when the wait fails)
        process.wait()
    assert not (tmp_path / "out").exists()
    run(cmd, sft)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert 2 <= summary["resumed_from_step"] < 4
    assert curve(tmp_path, "reward") == pytest.approx(curve(reinforced, "reward"), abs=1e-4)
    for key in ("loss", "kl", "grad_norm"):  # the policy moved as in the uninterrupted run
        assert curve(tmp_path, key) == pytest.approx(curve(reinforced, key), abs=1e-4), key


def test_reinforce_off_says_so_and_the_pipeline_ships_the_model_before_it(sft, tmp_path):
    run(reinforce_cmd(sft, tmp_path, enabled=False), sft)
    assert json.loads((tmp_path / "out" / "summary.json").read_text()) == {"enabled": False}
    assert not (tmp_path / "out" / "model").exists()
    assert final_model(sft / "results/merged", None, tmp_path / "out") == sft / "results/merged"
    code = "import sys; from tunemake.steps import reinforce; print([m for m in ('torch', 'transformers') if m in sys.modules])"
    assert subprocess.run([BIN / "python", "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
