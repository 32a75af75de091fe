rule base:
    input:
        model=base_model_files(),
        code=src("base"),
    output:
        directory("results/base"),
    params:
        base=config["base"],
    log:
        "logs/base.log",
    conda:
        TUNEMAKE_ENV
    shell:
        "tunemake base --params params.yaml --out {output} --log {log}"
