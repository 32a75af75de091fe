rule base:
    input:
        model=base_model_files(),
        code=code("base"),
    output:
        directory("results/base"),
    log:
        "logs/base.log",
    conda:
        TUNEMAKE_ENV
    params:
        base=config["base"],
    shell:
        "tunemake base --params params.yaml --out {output} --log-file {log}"


# Checkpoints live outside the output, so a failed or killed run resumes from them instead of starting over.
# `tunemake launch` starts one process per GPU the job sees, and srun/PyTorchJob workers when `nodes` > 1 (profiles).
rule train:
    input:
        base="results/base",
        data="results/tokenized",
        weights=base_weights(),
        code=code("train"),
    output:
        directory("results/train"),
    log:
        "logs/train.log",
    conda:
        TUNEMAKE_ENV
    resources:
        nodes=1,
    params:
        train=config["train"],
    shell:
        "tunemake launch --nodes {resources.nodes} -- tunemake train --params params.yaml --base {input.base} --data {input.data} --out {output}"
        " --checkpoints checkpoints/train --log-file {log}"


rule merge:
    input:
        base="results/base",
        trained="results/train",
        weights=base_weights(),
        code=code("merge"),
    output:
        directory("results/merged"),
    log:
        "logs/merge.log",
    conda:
        TUNEMAKE_ENV
    params:
        merge=config["merge"],
    shell:
        "tunemake merge --params params.yaml --base {input.base} --trained {input.trained} --out {output} --log-file {log}"


# DPO on the merged SFT model (align.enabled); when off it only writes a note (here, not as a cluster job), and gguf
# and evaluate use results/merged.
rule align:
    input:
        merged="results/merged",
        pairs="results/pairs",
        code=code("align"),
    output:
        directory("results/align"),
    log:
        "logs/align.log",
    localrule: not config["align"]["enabled"]
    conda:
        TUNEMAKE_ENV
    resources:
        nodes=1,
    params:
        # when off, its settings change nothing: editing them must not re-run what follows
        align=config["align"] if config["align"]["enabled"] else {"enabled": False},
        merge=config["merge"],
    shell:
        "tunemake launch --nodes {resources.nodes} -- tunemake align --params params.yaml --merged {input.merged} --pairs {input.pairs}"
        " --out {output} --checkpoints checkpoints/align --log-file {log}"


dvc_metrics("results/train/metrics.json", "results/align/metrics.json")
dvc_plot("results/train/plots/train.tsv", x="step", y="loss")
dvc_plot("results/train/plots/eval.tsv", x="step", y="val_loss")
dvc_plot("results/align/plots/train.tsv", x="step", y=["rewards/chosen", "rewards/rejected", "rewards/margins"])
