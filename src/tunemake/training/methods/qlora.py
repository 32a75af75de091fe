"""qlora: the base weights quantized to 4 bits by bitsandbytes (NF4, double quantization), LoRA adapters on top.

The adapter is trained against the 4-bit weights but merge folds it into the float base (results/base), never into
the 4-bit model, as the QLoRA paper's release did.
"""

from __future__ import annotations

import os

from tunemake.models.precision import qlora_compute_dtype
from tunemake.training.methods.lora import lora_config

ADAPTER = True


def build(base, params, dtype):
    import torch
    from peft import get_peft_model, prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    from tunemake.training.methods import load_base

    quantization = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=params.qlora.quant_type,
        bnb_4bit_use_double_quant=params.qlora.double_quant,
        bnb_4bit_compute_dtype=qlora_compute_dtype(params.qlora.compute_dtype),
    )
    # Each torchrun process quantizes onto its own GPU; current_device() would put every process on GPU 0.
    device = {"": int(os.environ.get("LOCAL_RANK", 0))} if torch.cuda.is_available() else {"": "cpu"}
    model = load_base(base, dtype, quantization_config=quantization, device_map=device)
    model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=params.gradient_checkpointing)
    return get_peft_model(model, lora_config(params.lora))
