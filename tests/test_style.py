"""The formatters and linters the project configures (pyproject.toml) are clean, and so is `snakemake --lint`."""

from __future__ import annotations

import pytest

from conftest import REPO, run


@pytest.mark.parametrize(
    "command", [["ruff", "format", "--check", "."], ["ruff", "check", "."]], ids=["format", "lint"]
)
def test_ruff_is_clean(command):
    run(command, REPO)


def test_snakefmt_is_clean():
    run(["snakefmt", "--check", "Snakefile", "rules"], REPO)


def test_snakemake_lint_is_clean():
    result = run(["snakemake", "--lint"], REPO)
    assert "Congratulations, your workflow is in a good condition!" in result.stdout + result.stderr
