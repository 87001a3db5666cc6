# Evaluation: one job per (cell, seed), beside its training (train.smk): results/<cell>/metrics.json (the only thing the reports read) and detections.json.


rule evaluate:
    input:
        model=f"{RESULTS}/{{seeddir}}{{cell}}/model_final.pt",
        data=lambda wildcards: [ancient(f) for f in data_inputs(wildcards.cell)],
    output:
        metrics=f"{RESULTS}/{{seeddir}}{{cell}}/metrics.json",
        detections=f"{RESULTS}/{{seeddir}}{{cell}}/detections.json",
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
