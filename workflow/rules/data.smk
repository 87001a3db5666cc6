# Data: the paper profile downloads (checksummed, resumable, idempotent: `klrpn data download`),
# one job per manifest entry; the smoke profile generates the synthetic COCO + VOC trees. Before
# any training job on a dataset, its pre-flight (`klrpn data check --dataset`) checks every image
# the cells list, the weights and the results disk, and stops the run listing what is wrong.
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


# The pre-flight of the training jobs on one dataset (dataset.name of their params): it runs
# before the first training job on that dataset in a results folder, and its output stays. Its
# inputs are ancient and it is never rerun on its own: Snakemake reruns every job whose input a
# job of the run produces, so a check that reran would make it redo every finished training. To
# check the data again, run `klrpn data check` (it writes nothing unless told). Local: it reads
# file headers only, where the jobs will read the data.
localrules:
    data_check,


rule data_check:
    input:
        data_check_inputs,
    output:
        layout.data_check_file(RESULTS, "{dataset}").as_posix(),
    log:
        f"{LOGS}/data-check/{{dataset}}.log",
    params:
        profile=PROFILE,
        results=lambda wildcards, output: os.path.dirname(output[0]),
    wildcard_constraints:
        dataset="|".join(DATASETS),
    conda:
        "../envs/klrpn.yaml"
    shell:
        "python -m klrpn.cli data check --profile {params.profile} --dataset {wildcards.dataset}"
        " --results {params.results} --out {output} > {log} 2>&1 || {{ cat {log} >&2; exit 1; }}"
