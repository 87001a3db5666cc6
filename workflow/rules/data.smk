# Data: the paper profile downloads (checksummed, resumable, idempotent: `klrpn data download`),
# one job per manifest entry; the smoke profile generates the synthetic COCO + VOC trees.
# Downloaded data is tracked by DVC as data.dvc (docs/pipeline.md): after `dvc pull` the markers
# exist and nothing is downloaded again.


rule download:
    output:
        protected(DOWNLOAD_MARKER),
    log:
        f"{LOGS}/download/{{entry}}.log",
    params:
        root=lambda wildcards, output: layout.root_of_download_marker(output[0]),
    threads: RESOURCES["download"]["threads"]
    resources:
        mem_mb=RESOURCES["download"]["mem_mb"],
        runtime=RESOURCES["download"]["runtime"],
    wildcard_constraints:
        entry="|".join(MANIFEST),
    conda:
        "../envs/klrpn.yaml"
    shell:
        "python -m klrpn.cli data download {wildcards.entry} --root {params.root} --no-progress"
        " > {log} 2>&1"


rule synth:
    output:
        directory(SYNTHETIC_ROOT or "synthetic"),
    log:
        f"{LOGS}/synth.log",
    params:
        seed=config["synthetic_seed"],
    threads: RESOURCES["synth"]["threads"]
    resources:
        mem_mb=RESOURCES["synth"]["mem_mb"],
        runtime=RESOURCES["synth"]["runtime"],
    conda:
        "../envs/klrpn.yaml"
    shell:
        "python -m klrpn.cli data synth --root {output} --seed {params.seed} > {log} 2>&1"
