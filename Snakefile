# tunemake: raw JSONL -> splits -> tokens -> adapter -> merged model -> GGUF -> evaluation -> gate -> report.
# Run: snakemake --profile local. dvc.yaml is compiled from these rules by `tunemake dag` (tests/test_frontdoors.py).


configfile: "params.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/model.smk"
include: "rules/export.smk"
include: "rules/evaluate.smk"
include: "rules/sweep.smk"


# Seconds of CPU work each: with --profile slurm or k8s they run where snakemake runs instead of waiting in a queue.
localrules:
    prepare,
    pairs,
    tokenize,
    converter,
    report,
    gate,


# A sweep's table is a target of its own too: the report then shows it even where DVC made results/ (no Snakemake
# metadata to tell that the report's inputs changed).
rule all:
    default_target: True
    input:
        "results/report",
        SWEEP.outputs(),
