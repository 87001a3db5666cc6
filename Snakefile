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


rule all:
    input:
        TABLES,
        FIGURE3,
    default_target: True
