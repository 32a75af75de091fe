# tunemake: raw JSONL -> splits -> tokens -> adapter -> merged model (-> GGUF -> evaluation -> report, in later rules).
# Run: snakemake --profile local. The same steps, commands and parameters are in dvc.yaml (tests/test_frontdoors.py).


configfile: "params.yaml"


include: "rules/common.smk"
include: "rules/data.smk"
include: "rules/model.smk"


rule all:
    input:
        "results/merged",
    default_target: True
