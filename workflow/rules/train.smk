# Training: one job per (cell, seed), into the run folder of klrpn.layout.run_dir (seed 0: the
# paper's run, the command without --seed; seed N: `--seed N`); `cell` is a cell of
# params/cells.yaml or an ablation variant of params/ablations.yaml. Inputs are the cell's data and exactly the params files merged into
# its configuration (so editing params/cells/<cell>.yaml retrains that cell only), and the passed
# pre-flight of its dataset (data.smk, data_check). `klrpn train`
# resumes from the run folder's checkpoints/ (deliberately not a declared output, so neither a
# failed attempt nor a requeued SLURM job loses it); train_log.csv is appended on resume
# (update()). It claims its GPUs itself (Snakemake does not set CUDA_VISIBLE_DEVICES locally).


rule train:
    input:
        data=lambda wildcards: [ancient(f) for f in data_inputs(wildcards.cell)],
        checked=lambda wildcards: ancient(data_check_of(wildcards.cell)),
        params=lambda wildcards: params_files(wildcards.cell),
    output:
        model=f"{RUN_DIR}/{layout.FINAL_NAME}",
        curves=update(f"{RUN_DIR}/{layout.TRAIN_LOG}"),
    log:
        f"{LOGS}/train/{{seeddir}}{{cell}}.log",
    params:
        profile=PROFILE,
        seed=seed_option,
        out=lambda wildcards, output: os.path.dirname(output.model),
    threads: train_threads
    resources:
        gpu=lambda wildcards: cell_gpus(wildcards.cell),
        mem_mb=train_resource("mem_mb"),
        runtime=train_resource("runtime"),
    wildcard_constraints:
        seeddir=SEEDDIR,
        cell=RUN_CELLS,
    conda:
        "../envs/klrpn.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m klrpn.cli train {wildcards.cell} --profile {params.profile}{params.seed} --out {params.out} --restart-on-params-change"
        " > {log} 2>&1"
