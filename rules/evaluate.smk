# The regression suite and the base model's answers to it: made once per base and prompt set, reused by every run.
rule suite:
    input:
        base="results/base",
        converter="results/converter",
        weights=base_weights(),
        prompts=job_sources(*(p for p in (config["suite"]["prompts"],) if p)),
        code=code("suite") + job_sources("src/tunemake/prompts/general.jsonl"),
    output:
        directory("results/suite"),
    log:
        "logs/suite.log",
    benchmark:
        "logs/benchmarks/suite.tsv"
    conda:
        TUNEMAKE_ENV
    threads: ALL_CORES
    params:
        suite=config["suite"],
    shell:
        "tunemake suite --params params.yaml --base {input.base} --converter {input.converter} --out {output}"
        " --log-file {log}"


# The base model's row of every evaluation, scored once (tunemake.steps.baseline): retraining or a sweep over training
# settings never scores the base again; a sweep over eval settings scores it per point.
BASELINE = "results/{point}baseline" if SWEEP.key.startswith("eval.") else "results/baseline"


rule baseline:
    input:
        base="results/base",
        data="results/data",
        pairs="results/pairs",
        tokenized="results/tokenized",
        suite="results/suite",
        converter="results/converter",
        weights=base_weights(),
        code=code("baseline"),
    output:
        directory("results/{point}baseline"),
    log:
        "logs/{point}baseline.log",
    benchmark:
        "logs/benchmarks/{point}baseline.tsv"
    conda:
        TUNEMAKE_ENV
    threads: ALL_CORES
    params:
        eval=point_params("eval"),
        sweep=point_set,
    shell:
        "tunemake baseline --params params.yaml{params.sweep} --base {input.base} --data {input.data}"
        " --pairs {input.pairs} --tokenized {input.tokenized} --suite {input.suite} --converter {input.converter}"
        " --out {output} --log-file {log}"


rule evaluate:
    input:
        baseline=BASELINE,
        merged="results/{point}merged",
        align="results/{point}align",
        reinforce="results/{point}reinforce",
        gguf="results/{point}gguf",
        data="results/data",
        pairs="results/pairs",
        tokenized="results/tokenized",
        suite="results/suite",
        code=code("evaluate"),
    output:
        directory("results/{point}eval"),
    log:
        "logs/{point}evaluate.log",
    benchmark:
        "logs/benchmarks/{point}evaluate.tsv"
    conda:
        TUNEMAKE_ENV
    threads: ALL_CORES
    params:
        eval=point_params("eval"),
        sweep=point_set,
    shell:
        "tunemake evaluate --params params.yaml{params.sweep} --baseline {input.baseline} --merged {input.merged}"
        " --align {input.align} --reinforce {input.reinforce} --gguf {input.gguf} --data {input.data}"
        " --pairs {input.pairs} --tokenized {input.tokenized} --suite {input.suite} --out {output} --log-file {log}"


# BFCL's rows and checker (tunemake.steps.bfcl): base, tuned and shipped GGUF through llama-server, the base cached per base.
rule bfcl:
    input:
        base="results/base",
        converter="results/converter",
        gguf="results/{point}gguf",
        weights=base_weights(),
        code=code("bfcl"),
    output:
        directory("results/{point}bfcl"),
    log:
        "logs/{point}bfcl.log",
    benchmark:
        "logs/benchmarks/{point}bfcl.tsv"
    conda:
        TUNEMAKE_ENV
    threads: ALL_CORES
    params:
        bfcl=point_params("bfcl"),
        sweep=point_set,
    shell:
        "tunemake bfcl --params params.yaml{params.sweep} --base {input.base} --converter {input.converter}"
        " --gguf {input.gguf} --out {output} --log-file {log}"


# Decides deploy / iterate / abort; with gate.enforce on, anything but deploy stops the pipeline here.
rule gate:
    input:
        eval="results/{point}eval",
        gguf="results/{point}gguf",
        bfcl="results/{point}bfcl",
        code=code("gate"),
    output:
        verdict="results/{point}gate.json",
        headline="results/{point}headline.json",
    log:
        "logs/{point}gate.log",
    benchmark:
        "logs/benchmarks/{point}gate.tsv"
    conda:
        TUNEMAKE_ENV
    params:
        gate=point_params("gate"),
        sweep=point_set,
    shell:
        "tunemake gate --params params.yaml{params.sweep} --eval {input.eval} --gguf {input.gguf}"
        " --bfcl {input.bfcl} --out {output.verdict} --headline {output.headline} --log-file {log}"


# The report prints every parameter of the run, so params.yaml itself is an input: any edit re-renders it (seconds).
rule report:
    input:
        params=sources("params.yaml"),
        data="results/data",
        trained="results/train",
        align="results/align",
        reinforce="results/reinforce",
        gguf="results/gguf",
        eval="results/eval",
        gate="results/gate.json",
        bfcl="results/bfcl",
        headline="results/headline.json",
        sweep=SWEEP.outputs(),
        code=code("report")
        + job_sources("src/tunemake/report/templates/report.html", "src/tunemake/report/templates/report.md"),
    output:
        report(
            directory("results/report"),
            patterns=["{name}.html", "{name}.png"],
            category="Report",
            caption="report.rst",
        ),
    log:
        "logs/report.log",
    benchmark:
        "logs/benchmarks/report.tsv"
    conda:
        TUNEMAKE_ENV
    params:
        sweep="".join(f" --sweep {path}" for path in SWEEP.outputs()),
    shell:
        "tunemake report --params {input.params} --data {input.data} --trained {input.trained} --align {input.align}"
        " --reinforce {input.reinforce} --gguf {input.gguf} --eval {input.eval} --gate {input.gate}"
        " --headline {input.headline} --bfcl {input.bfcl}{params.sweep} --out {output} --log-file {log}"


# Only the headlines are DVC metrics (tunemake.evaluation.headline): `dvc exp show` gets a dozen named columns, not
# every leaf of results/eval/metrics.json and results/gate.json, which stay plain outputs.
dvc_metrics("results/headline.json")
