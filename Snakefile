# KL-RPN reproduction: data -> train -> evaluate -> analysis (Figure 3) -> reports (Tables 1-2).
# Usage and profiles: docs/pipeline.md.  The cells come from params/cells.yaml.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "workflow/config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/analysis.smk"
include: "workflow/rules/report.smk"


# On SLURM: check that the plugin's job-status command works here, and bound how long a job may
# go without a status (workflow/scripts/slurm_guard.py; docs/pipeline.md, "SLURM").
onstart:
    from snakemake.logging import logger as _logger

    sys.path.insert(0, os.path.join(workflow.basedir, "workflow", "scripts"))
    import slurm_guard

    try:
        slurm_guard.on_start(workflow, _logger)
    except slurm_guard.StatusCheckError as e:
        raise WorkflowError(f"SLURM: {e}")


rule all:
    input:
        TABLES,
        FIGURE3,
    default_target: True
