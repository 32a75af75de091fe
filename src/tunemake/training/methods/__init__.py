"""Training methods: one module each, registered here. A method builds the model to train from results/base.

Each module exposes `ADAPTER` (True: train saves a PEFT adapter that merge folds into the base; False: train saves
full weights that merge copies) and `build(base_dir, params, dtype) -> model`, leaving exactly the parameters it
trains with requires_grad=True. Add a method by adding a module here: its file name is the name train.method
takes (tunemake.registry). Modules import torch inside functions, so importing the registry stays cheap.
"""

from __future__ import annotations

from importlib import import_module

from tunemake.registry import names

METHODS = {name: import_module(f"tunemake.training.methods.{name}") for name in names("training.methods")}


def load_base(base, dtype, **kwargs):
    from tunemake.models.weights import load

    return load(base, dtype=dtype, **kwargs)
