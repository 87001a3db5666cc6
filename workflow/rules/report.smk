# Reports: reports/table{1,2}.md from the table's metrics.json files and the paper's numbers.


rule report:
    input:
        metrics=table_metrics,
        reference=REFERENCE,
        cells=f"{config['params_dir']}/{layout.CELLS_INDEX}",
    output:
        f"{REPORTS}/table{{table}}.md",
    log:
        f"{LOGS}/report/table{{table}}.log",
    params:
        profile=PROFILE,
        results=lambda wildcards, input: layout.results_of_run(Path(input[0]).parent),
        params_dir=lambda wildcards, input: Path(input.cells).parent,
    threads: RESOURCES["report"]["threads"]
    resources:
        mem_mb=RESOURCES["report"]["mem_mb"],
        runtime=RESOURCES["report"]["runtime"],
    wildcard_constraints:
        table="1|2",
    conda:
        "../envs/klrpn.yaml"
    shell:
        "python -m klrpn.cli report table{wildcards.table} --results {params.results}"
        " --params {params.params_dir} --profile {params.profile} --out {output} > {log} 2>&1"


# Beyond the paper (issue 10, docs/significance.md): three reports over the seeds of config
# `seed_reports.seeds` (default: `seeds`). Each needs exactly its own (cell, seed) runs.


rule significance:
    input:
        runs=seed_runs(PAIR_CELLS, REPORT_SEEDS, (layout.METRICS_NAME, layout.DETECTIONS_NAME)),
        # the bootstrap re-scores each detections.json against the test annotations
        data=[ancient(f) for c in PAIR_CELLS for f in data_inputs(c)],
        reference=REFERENCE,
        cells=f"{config['params_dir']}/{layout.CELLS_INDEX}",
    output:
        md=f"{REPORTS}/significance.md",
        csv=f"{REPORTS}/significance.csv",
    log:
        f"{LOGS}/report/significance.log",
    params:
        profile=PROFILE,
        results=lambda wildcards, input: layout.results_of_run(Path(input[0]).parent),
        params_dir=lambda wildcards, input: Path(input.cells).parent,
        seeds=",".join(map(str, REPORT_SEEDS)),
        pairs=",".join(p["rpn"] for p in PAIRS),
        resamples=config["seed_reports"]["resamples"],
        bootstrap_seed=config["seed_reports"]["bootstrap_seed"],
    threads: RESOURCES["significance"]["threads"]
    resources:
        mem_mb=RESOURCES["significance"]["mem_mb"],
        runtime=RESOURCES["significance"]["runtime"],
    conda:
        "../envs/klrpn.yaml"
    shell:
        "OMP_NUM_THREADS=1 python -m klrpn.cli report significance --results {params.results}"
        " --params {params.params_dir} --profile {params.profile} --seeds {params.seeds}"
        " --pairs {params.pairs} --resamples {params.resamples} --bootstrap-seed {params.bootstrap_seed}"
        " --workers {threads} --out {output.md} --csv {output.csv} > {log} 2>&1"


rule proposals:
    input:
        metrics=seed_runs(PAIR_CELLS, REPORT_SEEDS),
        reference=REFERENCE,
    output:
        md=f"{REPORTS}/proposals.md",
        png=f"{REPORTS}/proposals.png",
    log:
        f"{LOGS}/report/proposals.log",
    params:
        profile=PROFILE,
        results=lambda wildcards, input: layout.results_of_run(Path(input[0]).parent),
        seeds=",".join(map(str, REPORT_SEEDS)),
        pairs=",".join(p["rpn"] for p in PAIRS),
    threads: RESOURCES["report"]["threads"]
    resources:
        mem_mb=RESOURCES["report"]["mem_mb"],
        runtime=RESOURCES["report"]["runtime"],
    conda:
        "../envs/klrpn.yaml"
    shell:
        "python -m klrpn.cli report proposals --results {params.results} --profile {params.profile}"
        " --seeds {params.seeds} --pairs {params.pairs} --out {output.md} --png {output.png}"
        " > {log} 2>&1"


if VARIANTS:

    rule ablations:
        input:
            metrics=seed_runs(ABLATION_CELLS, REPORT_SEEDS),
            reference=REFERENCE,
            ablations=f"{config['params_dir']}/ablations.yaml",
        output:
            f"{REPORTS}/ablations.md",
        log:
            f"{LOGS}/report/ablations.log",
        params:
            profile=PROFILE,
            results=lambda wildcards, input: layout.results_of_run(Path(input[0]).parent),
            params_dir=lambda wildcards, input: Path(input.ablations).parent,
            seeds=",".join(map(str, REPORT_SEEDS)),
        threads: RESOURCES["report"]["threads"]
        resources:
            mem_mb=RESOURCES["report"]["mem_mb"],
            runtime=RESOURCES["report"]["runtime"],
        conda:
            "../envs/klrpn.yaml"
        shell:
            "python -m klrpn.cli report ablations --results {params.results}"
            " --params {params.params_dir} --profile {params.profile} --seeds {params.seeds}"
            " --out {output} > {log} 2>&1"
