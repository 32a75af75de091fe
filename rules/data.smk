rule prepare:
    input:
        sources=sources(*(s["path"] for s in config["prepare"]["sources"])),
        code=src("prepare", "split", "formats"),
    output:
        directory("results/data"),
    params:
        prepare=config["prepare"],
    log:
        "logs/prepare.log",
    conda:
        TUNEMAKE_ENV
    shell:
        "tunemake prepare --params params.yaml --out {output} --log-file {log}"


rule tokenize:
    input:
        base="results/base",
        data="results/data",
        code=src("tokenize", "chat"),
    output:
        directory("results/tokenized"),
    params:
        tokenize=config["tokenize"],
    log:
        "logs/tokenize.log",
    conda:
        TUNEMAKE_ENV
    shell:
        "tunemake tokenize --params params.yaml --base {input.base} --data {input.data} --out {output} --log-file {log}"
