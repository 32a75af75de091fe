rule base:
    input:
        model=base_model_files(),
        code=src("base", "cache"),
    output:
        directory("results/base"),
    params:
        base=config["base"],
    log:
        "logs/base.log",
    conda:
        TUNEMAKE_ENV
    shell:
        "tunemake base --params params.yaml --out {output} --log-file {log}"


# Checkpoints live outside the output, so a failed or killed run resumes from them instead of starting over.
# `tunemake launch` starts one process per GPU the job sees, and srun/PyTorchJob workers when `nodes` > 1 (profiles).
rule train:
    input:
        base="results/base",
        data="results/tokenized",
        weights=base_weights(),
        code=src("train", "callbacks", "methods", "base", "cache"),
    output:
        directory("results/train"),
    params:
        train=config["train"],
    resources:
        nodes=1,
    log:
        "logs/train.log",
    conda:
        TUNEMAKE_ENV
    shell:
        "tunemake launch --nodes {resources.nodes} -- tunemake train --params params.yaml --base {input.base} --data {input.data} --out {output}"
        " --checkpoints checkpoints/train --log-file {log}"


rule merge:
    input:
        base="results/base",
        trained="results/train",
        weights=base_weights(),
        code=src("merge", "chat", "base", "cache"),
    output:
        directory("results/merged"),
    params:
        merge=config["merge"],
    log:
        "logs/merge.log",
    conda:
        TUNEMAKE_ENV
    shell:
        "tunemake merge --params params.yaml --base {input.base} --trained {input.trained} --out {output} --log-file {log}"
