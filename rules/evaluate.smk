rule evaluate:
    input:
        base="results/base",
        merged="results/merged",
        gguf="results/gguf",
        data="results/data",
        tokenized="results/tokenized",
        weights=base_weights(),
        code=src("evaluate", "scoring", "chat", "gguf", "train", "base", "cache"),
    output:
        directory("results/eval"),
    params:
        eval=config["eval"],
    log:
        "logs/evaluate.log",
    conda:
        TUNEMAKE_ENV
    shell:
        "tunemake evaluate --params params.yaml --base {input.base} --merged {input.merged} --gguf {input.gguf}"
        " --data {input.data} --tokenized {input.tokenized} --out {output} --log-file {log}"


# The report prints every parameter of the run, so params.yaml itself is an input: any edit re-renders it (seconds).
rule report:
    input:
        params=sources("params.yaml"),
        data="results/data",
        trained="results/train",
        gguf="results/gguf",
        eval="results/eval",
        code=src("report", "gate") + job_sources("src/tunemake/templates/report.html"),
    output:
        report(
            directory("results/report"),
            patterns=["{name}.html", "{name}.png"],
            category="Report",
            caption="report.rst",
        ),
    params:
        gate=config["gate"],
    log:
        "logs/report.log",
    conda:
        TUNEMAKE_ENV
    shell:
        "tunemake report --params {input.params} --data {input.data} --trained {input.trained} --gguf {input.gguf}"
        " --eval {input.eval} --out {output} --log-file {log}"


rule gate:
    input:
        verdict="results/report",
        code=src("gate"),
    output:
        "results/gate.json",
    params:
        gate=config["gate"],
    log:
        "logs/gate.log",
    conda:
        TUNEMAKE_ENV
    shell:
        "tunemake gate --params params.yaml --verdict {input.verdict}/verdict.json --out {output} --log-file {log}"
