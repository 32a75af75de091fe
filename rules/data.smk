rule prepare:
    input:
        sources=sources(*(s["path"] for s in config["prepare"]["sources"])),
        code=code("prepare"),
    output:
        directory("results/data"),
    log:
        "logs/prepare.log",
    conda:
        TUNEMAKE_ENV
    params:
        prepare=config["prepare"],
    shell:
        "tunemake prepare --params params.yaml --out {output} --log-file {log}"


rule tokenize:
    input:
        base="results/base",
        data="results/data",
        code=code("tokenize"),
    output:
        directory("results/tokenized"),
    log:
        "logs/tokenize.log",
    conda:
        TUNEMAKE_ENV
    params:
        tokenize=config["tokenize"],
    shell:
        "tunemake tokenize --params params.yaml --base {input.base} --data {input.data} --out {output} --log-file {log}"
