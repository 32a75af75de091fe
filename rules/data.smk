# The base model's own answers to everyday prompts, mixed into training by prepare (prepare.replay). Made once per base.
rule replay:
    input:
        base="results/base",
        weights=base_weights(),
        code=code("replay") + job_sources("src/tunemake/prompts/replay.jsonl"),
    output:
        directory("results/replay"),
    log:
        "logs/replay.log",
    benchmark:
        "logs/benchmarks/replay.tsv"
    conda:
        TUNEMAKE_ENV
    threads: ALL_CORES
    params:
        replay=replay_params,
    shell:
        "tunemake replay --params params.yaml --base {input.base} --out {output} --log-file {log}"


rule prepare:
    input:
        sources=sources(*(s["path"] for s in config["prepare"]["sources"])),
        replay="results/replay",
        code=code("prepare"),
    output:
        directory("results/data"),
    log:
        "logs/prepare.log",
    benchmark:
        "logs/benchmarks/prepare.tsv"
    conda:
        TUNEMAKE_ENV
    params:
        prepare=config["prepare"],
    shell:
        "tunemake prepare --params params.yaml --replay {input.replay} --out {output} --log-file {log}"


# Preference pairs for align; a step of its own, so editing them never re-runs prepare, tokenize or train.
rule pairs:
    input:
        sources=sources(*(s["path"] for s in config["pairs"]["sources"])),
        data="results/data",
        code=code("pairs"),
    output:
        directory("results/pairs"),
    log:
        "logs/pairs.log",
    benchmark:
        "logs/benchmarks/pairs.tsv"
    conda:
        TUNEMAKE_ENV
    params:
        pairs=config["pairs"],
        prepare=config["prepare"],
    shell:
        "tunemake pairs --params params.yaml --data {input.data} --out {output} --log-file {log}"


rule tokenize:
    input:
        base="results/base",
        data="results/data",
        code=code("tokenize"),
    output:
        directory("results/tokenized"),
    log:
        "logs/tokenize.log",
    benchmark:
        "logs/benchmarks/tokenize.tsv"
    conda:
        TUNEMAKE_ENV
    params:
        tokenize=config["tokenize"],
    shell:
        "tunemake tokenize --params params.yaml --base {input.base} --data {input.data} --out {output} --log-file {log}"
