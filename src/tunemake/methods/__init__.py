"""Training methods: one module each, registered here. A method builds the model to train from results/base.

Each module exposes `ADAPTER` (True: train saves a PEFT adapter that merge folds into the base; False: train saves
full weights that merge copies) and `build(base_dir, params, dtype) -> model`, leaving exactly the parameters it
trains with requires_grad=True. Add a method by adding a module and a line below (and its Literal in params.py).
"""

from __future__ import annotations

from tunemake.methods import freeze, full, lora, qlora

METHODS = {"lora": lora, "qlora": qlora, "full": full, "freeze": freeze}


def load_base(base, dtype, **kwargs):
    from tunemake.base import load

    return load(base, dtype=dtype, **kwargs)
