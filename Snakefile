# KL-RPN reproduction: data -> train -> evaluate -> analysis (Figure 3) -> reports (Tables 1-2).
# Usage and profiles: docs/pipeline.md.  The cells come from params/cells.yaml.
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: "workflow/config/config.yaml"


# `--config seeds=[0,1,2]` and a profile's `config:` reach here as strings (Snakemake reads them
# with YAML's BaseLoader): digits in the seed lists and counts become integers, `null` None,
# before validation.
_digits_to_int = lambda v: (
    [_digits_to_int(x) for x in v]
    if isinstance(v, list)
    else int(v) if str(v).isdigit() else None if v in ("null", "~") else v
)
config["seeds"] = _digits_to_int(config.get("seeds"))
for _key in ("seeds", "resamples", "bootstrap_seed"):
    if _key in config.get("seed_reports", {}):
        config["seed_reports"][_key] = _digits_to_int(config["seed_reports"][_key])


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


# Tables 1-2 and Figure 3 (seed 0's runs), and every cell of the tables with each seed of config
# `seeds` (default [0]: nothing more). The seed reports (reports/significance.md, proposals.md,
# ablations.md) are named targets (docs/significance.md).
rule all:
    input:
        TABLES,
        FIGURE3,
        seed_runs(CELLS, SEEDS),
    default_target: True
