# llama.cpp's converter is a declared output (not a hidden cache), so a pod with no shared disk receives it too.
rule converter:
    input:
        lock=sources("envs/requirements.lock"),
        code=code("converter"),
    output:
        directory("results/converter"),
    log:
        "logs/converter.log",
    benchmark:
        "logs/benchmarks/converter.tsv"
    conda:
        TUNEMAKE_ENV
    shell:
        "tunemake converter --out {output} --log-file {log}"


rule gguf:
    input:
        merged="results/{point}merged",
        align="results/{point}align",
        reinforce="results/{point}reinforce",
        converter="results/converter",
        data="results/tokenized",
        code=code("gguf"),
    output:
        directory("results/{point}gguf"),
    log:
        "logs/{point}gguf.log",
    benchmark:
        "logs/benchmarks/{point}gguf.tsv"
    conda:
        TUNEMAKE_ENV
    threads: ALL_CORES
    params:
        gguf=point_params("gguf"),
        sweep=point_set,
    shell:
        "tunemake gguf --params params.yaml{params.sweep} --merged {input.merged} --align {input.align}"
        " --reinforce {input.reinforce} --converter {input.converter} --data {input.data} --out {output}"
        " --log-file {log}"
