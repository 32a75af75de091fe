"""The `gguf` section: the GGUF files and quants (tunemake.steps.gguf)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tunemake.params import Strict

IMATRIX_IGNORED = ("Q8_0",)  # its rounding has no weighting (ggml's quantize_q8_0)
# llama.cpp refuses to make these without an importance matrix


NEEDS_IMATRIX = ("IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "Q2_K_S")


Quant = Literal[  # llama.cpp's file types (LLAMA_FTYPE_MOSTLY_*)
    "Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0", "IQ4_XS", "IQ4_NL",
    "Q3_K_L", "Q3_K_M", "Q3_K_S", "IQ3_M", "IQ3_S", "IQ3_XS", "IQ3_XXS", "Q2_K", "Q2_K_S", "IQ2_M", "IQ2_S",
    "IQ2_XS", "IQ2_XXS", "IQ1_M", "IQ1_S",
]  # fmt: skip


class GgufParams(Strict):
    outtype: Literal["f16", "bf16", "f32"] = Field("f16", description="the unquantized GGUF the quants are made from")
    quants: list[Quant] = Field(["Q8_0"], description="llama.cpp quant types; the first is shipped and gated")
    imatrix_tokens: int = Field(
        16384,
        gt=0,
        description="training-split tokens the importance matrix is computed from (llama-imatrix's calibration "
        "text; tunemake.llama.imatrix)",
    )
    imatrix_quants: list[Quant] = Field(
        [],
        description="the quants made with the importance matrix (the IQ1/IQ2, IQ3_XXS and Q2_K_S types must be); "
        "the others are made without it. Measured on the default model it lifts IQ4_XS and Q3_K_M and costs Q5_0 "
        "and Q5_K_M (docs/benchmarks/quantization.md)",
    )
    imatrix_compare: bool = Field(
        True,
        description="also make each of imatrix_quants without it, as '<quant>-no-imatrix', so evaluate measures "
        "what it gains (one more file and evaluation each)",
    )
    system: str | None = Field(None, description="SYSTEM prompt for the Ollama Modelfile; null = the template's own")

    @model_validator(mode="after")
    def _imatrix_use(self) -> "GgufParams":
        if not set(self.imatrix_quants) <= set(self.quants):
            extra = sorted(set(self.imatrix_quants) - set(self.quants))
            raise ValueError(f"imatrix_quants lists {extra}, which quants does not: add them to quants or drop them")
        needing = sorted((set(self.quants) & set(NEEDS_IMATRIX)) - set(self.imatrix_quants))
        if needing:
            raise ValueError(
                f"{needing} cannot be made without an importance matrix (llama.cpp refuses): add them to imatrix_quants"
            )
        return self

    def compared(self) -> list[str]:
        """The imatrix quants also made without it (Q8_0's rounding ignores the matrix; some types need it)."""
        if not self.imatrix_compare:
            return []
        return [q for q in self.imatrix_quants if q not in IMATRIX_IGNORED + NEEDS_IMATRIX]
