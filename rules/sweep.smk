# A sweep's table and plot, for the report: only with --config sweep=KEY:V1,V2,... (tunemake.commands.sweep).
if SWEEP.key:

    rule sweep:
        input:
            trained=expand("results/{point}train", point=SWEEP.points),
            eval=expand("results/{point}eval", point=SWEEP.points),
            gate=expand("results/{point}gate.json", point=SWEEP.points),
            headline=expand("results/{point}headline.json", point=SWEEP.points),
            code=code("sweep"),
        output:
            directory(SWEEP.outputs()[0]),
        log:
            f"logs/sweep/{SWEEP.key}.log",
        localrule: True
        conda:
            TUNEMAKE_ENV
        params:
            key=SWEEP.key,
            runs=SWEEP.run_args(),
            gate=config["gate"],
        shell:
            "tunemake sweep --params params.yaml --key {params.key} {params.runs} --out {output} --log-file {log}"
