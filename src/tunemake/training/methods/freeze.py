"""freeze: train only the last N transformer blocks (train.freeze.layers) and, optionally, the output head.

With tied input/output embeddings (SmolLM2 has them) training the head trains the embedding matrix too; the
summary's trainable share counts it.
"""

from __future__ import annotations

from tunemake.errors import StepError

ADAPTER = False


def blocks(model):
    """The model's stack of transformer blocks: the ModuleList as long as config.num_hidden_layers."""
    import torch

    count = model.config.get_text_config().num_hidden_layers
    for module in model.modules():
        if isinstance(module, torch.nn.ModuleList) and len(module) == count:
            return module
    raise StepError(
        f"{type(model).__name__}: found no list of {count} transformer blocks to unfreeze; use method lora or full"
    )


def build(base, params, dtype):
    from tunemake.training.methods import load_base

    model = load_base(base, dtype)
    model.requires_grad_(False)
    stack = blocks(model)
    if params.freeze.layers > len(stack):
        raise StepError(f"train.freeze.layers is {params.freeze.layers} but the model has {len(stack)} blocks")
    for block in stack[-params.freeze.layers :]:
        block.requires_grad_(True)
    if params.freeze.lm_head:
        model.get_output_embeddings().requires_grad_(True)
    return model
