"""The loss on assistant tokens: the label tokenize writes on every other token, and the loss train and evaluate use."""

from __future__ import annotations

IGNORE = -100  # the label on untrained tokens (prompts, system text, tool specs); cross_entropy skips it


def assistant_loss(model, inputs: dict, num_items_in_batch=None):
    """Next-token loss on the labelled (assistant) positions, projecting only those through the output head.

    The data is about 85% prompt, system and tool text, so scoring every position through a 49k-word head wastes
    most of it; `logits_to_keep` picks the positions instead. Same loss as the model's own, to float rounding.
    """
    import torch

    labels = inputs.pop("labels")
    keep = (labels[:, 1:] != IGNORE).any(0).nonzero().squeeze(1)  # positions whose next token is trained
    outputs = model(**inputs, use_cache=False, logits_to_keep=keep)
    targets = labels[:, keep + 1]
    total = torch.nn.functional.cross_entropy(
        outputs.logits.flatten(0, 1).float(), targets.flatten(), ignore_index=IGNORE, reduction="sum"
    )
    count = num_items_in_batch if num_items_in_batch is not None else (targets != IGNORE).sum()
    return total / torch.as_tensor(count).clamp(min=1), outputs
