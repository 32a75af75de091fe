"""lora: low-rank adapters (train.lora) on frozen float base weights."""

from __future__ import annotations

ADAPTER = True


def lora_config(params):
    from peft import LoraConfig

    return LoraConfig(
        r=params.r,
        lora_alpha=params.alpha,
        lora_dropout=params.dropout,
        target_modules=params.target_modules,
        use_dora=params.use_dora,
        use_rslora=params.use_rslora,
        task_type="CAUSAL_LM",
    )


def build(base, params, dtype):
    from peft import get_peft_model

    from tunemake.training.methods import load_base

    return get_peft_model(load_base(base, dtype), lora_config(params.lora))
