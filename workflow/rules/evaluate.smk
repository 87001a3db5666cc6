# Evaluation: one job per (cell, seed), beside its training (train.smk), in the same run folder:
# metrics.json (the only thing the reports read) and detections.json.


rule evaluate:
    input:
        model=f"{RUN_DIR}/{layout.FINAL_NAME}",
        data=lambda wildcards: [ancient(f) for f in data_inputs(wildcards.cell)],
    output:
        metrics=f"{RUN_DIR}/{layout.METRICS_NAME}",
        detections=f"{RUN_DIR}/{layout.DETECTIONS_NAME}",
    log:
        f"{LOGS}/evaluate/{{seeddir}}{{cell}}.log",
    params:
        profile=PROFILE,
        seed=seed_option,
        out=lambda wildcards, output: os.path.dirname(output.metrics),
    threads: RESOURCES["evaluate"]["threads"]
    resources:
        gpu=lambda wildcards: min(1, cell_gpus(wildcards.cell)),
        mem_mb=evaluate_resource("mem_mb"),
        runtime=evaluate_resource("runtime"),
    wildcard_constraints:
        seeddir=SEEDDIR,
        cell=RUN_CELLS,
    conda:
        "../envs/klrpn.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m klrpn.cli evaluate {wildcards.cell} --profile {params.profile}{params.seed} --out {params.out}"
        " > {log} 2>&1"
