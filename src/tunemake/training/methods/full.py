"""full: every weight trained. Needs a far lower learning rate than LoRA (around 1e-5 to 5e-5)."""

from __future__ import annotations

ADAPTER = False


def build(base, params, dtype):
    from tunemake.training.methods import load_base

    model = load_base(base, dtype)
    model.requires_grad_(True)
    return model
