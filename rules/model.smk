rule base:
    input:
        model=base_model_files(),
        code=code("base"),
    output:
        directory("results/base"),
    log:
        "logs/base.log",
    benchmark:
        "logs/benchmarks/base.tsv"
    conda:
        TUNEMAKE_ENV
    params:
        base=config["base"],
    shell:
        "tunemake base --params params.yaml --out {output} --log-file {log}"


# Checkpoints live outside the output, so a failed or killed run resumes from them instead of starting over.
# `tunemake launch` starts one process per GPU the job sees, and srun/PyTorchJob workers when `nodes` > 1 (profiles).
# {point} is empty for params.yaml's run, sweep/KEY=VALUE/ for a sweep point (rules/common.smk).
rule train:
    input:
        base="results/base",
        data="results/tokenized",
        weights=base_weights(),
        code=code("train"),
    output:
        directory("results/{point}train"),
    log:
        "logs/{point}train.log",
    benchmark:
        "logs/benchmarks/{point}train.tsv"
    conda:
        TUNEMAKE_ENV
    threads: ALL_CORES
    resources:
        nodes=1,
    params:
        train=point_params("train"),
        sweep=point_set,
    shell:
        "tunemake launch --nodes {resources.nodes} -- tunemake train --params params.yaml{params.sweep} --base {input.base}"
        " --data {input.data} --out {output} --checkpoints checkpoints/{wildcards.point}train --log-file {log}"


rule merge:
    input:
        base="results/base",
        trained="results/{point}train",
        weights=base_weights(),
        code=code("merge"),
    output:
        directory("results/{point}merged"),
    log:
        "logs/{point}merge.log",
    benchmark:
        "logs/benchmarks/{point}merge.tsv"
    conda:
        TUNEMAKE_ENV
    params:
        merge=point_params("merge"),
        sweep=point_set,
    shell:
        "tunemake merge --params params.yaml{params.sweep} --base {input.base} --trained {input.trained} --out {output}"
        " --log-file {log}"


# DPO on the merged SFT model (align.enabled); when off it only writes a note (here, not as a cluster job), and gguf
# and evaluate use results/merged.
rule align:
    input:
        merged="results/{point}merged",
        pairs="results/pairs",
        code=code("align"),
    output:
        directory("results/{point}align"),
    log:
        "logs/{point}align.log",
    benchmark:
        "logs/benchmarks/{point}align.tsv"
    localrule: not config["align"]["enabled"]
    conda:
        TUNEMAKE_ENV
    threads: ALL_CORES
    resources:
        nodes=1,
    params:
        align=align_params,
        merge=point_params("merge"),
        sweep=point_set,
    shell:
        "tunemake launch --nodes {resources.nodes} -- tunemake align --params params.yaml{params.sweep} --merged {input.merged}"
        " --pairs {input.pairs} --out {output} --checkpoints checkpoints/{wildcards.point}align --log-file {log}"


# GRPO on the model align shipped (reinforce.enabled); when off it only writes a note, and gguf and evaluate use the
# model before it. A user's reward module (reinforce.rewards: module:function) is an input too.
rule reinforce:
    input:
        merged="results/{point}merged",
        align="results/{point}align",
        data="results/data",
        rewards=reward_sources(),
        code=code("reinforce"),
    output:
        directory("results/{point}reinforce"),
    log:
        "logs/{point}reinforce.log",
    benchmark:
        "logs/benchmarks/{point}reinforce.tsv"
    localrule: not config["reinforce"]["enabled"]
    conda:
        TUNEMAKE_ENV
    threads: ALL_CORES
    resources:
        nodes=1,
    params:
        reinforce=reinforce_params,
        merge=point_params("merge"),
        sweep=point_set,
    shell:
        "tunemake launch --nodes {resources.nodes} -- tunemake reinforce --params params.yaml{params.sweep}"
        " --merged {input.merged} --align {input.align} --data {input.data} --out {output}"
        " --checkpoints checkpoints/{wildcards.point}reinforce --log-file {log}"


dvc_metrics("results/train/headline.json", "results/align/headline.json", "results/reinforce/headline.json")
dvc_plot("results/train/plots/train.tsv", x="step", y="loss")
dvc_plot("results/train/plots/eval.tsv", x="step", y="val_loss")
dvc_plot("results/align/plots/train.tsv", x="step", y=["rewards/chosen", "rewards/rejected", "rewards/margins"])
dvc_plot(
    "results/reinforce/plots/train.tsv",
    x="step",
    y=["reward", "rewards/tool_call/mean", "rewards/no_call/mean", "kl"],
)
