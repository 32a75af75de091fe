"""Registries that are packages: a data format is a module in tunemake/data/formats/, a training method a module in
tunemake/training/methods/, and the module's file name is its name in params.yaml. Listing the files (rather than
importing them) lets tunemake.params validate names cheaply, and a registry can never list a module that does not exist.
"""

from __future__ import annotations

from pathlib import Path

PACKAGES = (
    "data.formats",
    "training.methods",
)  # the registries; every other sub-package is plain code (tunemake.commands.dag)
NOT_ENTRIES = {"__init__", "common"}  # a package's own plumbing, not a format or method


def names(package: str) -> list[str]:
    """The entries of tunemake.<package> (dotted): its module names, sorted."""
    folder = Path(__file__).parent.joinpath(*package.split("."))
    return sorted(p.stem for p in folder.glob("*.py") if p.stem not in NOT_ENTRIES)
