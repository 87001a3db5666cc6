# Reports: reports/table{1,2}.md from the table's metrics.json files and the paper's numbers.


rule report:
    input:
        metrics=table_metrics,
        reference=REFERENCE,
        cells=f"{config['params_dir']}/cells.yaml",
    output:
        f"{REPORTS}/table{{table}}.md",
    log:
        f"{LOGS}/report/table{{table}}.log",
    params:
        profile=PROFILE,
        results=lambda wildcards, input: Path(input.metrics[0]).parent.parent,
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
