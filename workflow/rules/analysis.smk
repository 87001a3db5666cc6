# Figure 3 (paper §3.2): offsets of high- vs low-objectness proposals, RPN vs KL-RPN.


rule figure3:
    input:
        rpn=seed_runs([config["figure3"]["rpn"]], [0], [layout.FINAL_NAME])[0],
        klrpn=seed_runs([config["figure3"]["klrpn"]], [0], [layout.FINAL_NAME])[0],
        data=[ancient(f) for f in data_inputs(config["figure3"]["rpn"])],
    output:
        md=f"{REPORTS}/figure3.md",
        png=f"{REPORTS}/figure3.png",
        csv=f"{REPORTS}/figure3.csv",
    log:
        f"{LOGS}/figure3.log",
    params:
        rpn=lambda wildcards, input: os.path.dirname(input.rpn),
        klrpn=lambda wildcards, input: os.path.dirname(input.klrpn),
        out=lambda wildcards, output: os.path.dirname(output.md),
        num_images=config["figure3"]["num_images"],
        device=config["figure3"]["device"],
    threads: RESOURCES["figure3"]["threads"]
    resources:
        mem_mb=RESOURCES["figure3"]["mem_mb"],
        runtime=RESOURCES["figure3"]["runtime"],
    conda:
        "../envs/klrpn.yaml"
    shell:
        "OMP_NUM_THREADS={threads} python -m klrpn.cli figure3 --rpn {params.rpn} --klrpn {params.klrpn} --out {params.out}"
        " --num-images {params.num_images} --device {params.device} > {log} 2>&1"
