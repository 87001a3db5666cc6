# Shared helpers: the cells (params/cells.yaml, resolved with klrpn.config), their data, params
# files and resources. Functions only; rules live in the stage files.
import os
import sys
from importlib import resources
from pathlib import Path

from klrpn import layout
from klrpn.config import ParamsError, list_cells, list_variants, load_cell
from klrpn.data.download import download_entries, read_manifest
from klrpn.paper import ReportError, selected_pairs

# Jobs run `python -m klrpn.cli ...` with the cells' params from config `params_dir`. Without
# --sdm conda, `python` is the interpreter running Snakemake (the project's venv, where klrpn is
# installed); with conda it is the env's python, which imports klrpn from this checkout through
# PYTHONPATH (needs --conda-not-block-search-path-envvars, see docs/pipeline.md).
os.environ.update(
    PATH=os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", "")]),
    PYTHONPATH=os.pathsep.join(filter(None, [workflow.basedir, os.environ.get("PYTHONPATH")])),
    KLRPN_PARAMS=config["params_dir"],
)

PROFILE = config["profile"]
RESULTS = config["results"]
REPORTS = config["reports"]
LOGS = config["logs"]
DATA_ROOT = config["data_root"]
SYNTHETIC = PROFILE in layout.SYNTHETIC_PROFILES  # the smoke params point every dataset at `klrpn data synth` output
# job sizes (threads, mem_mb, runtime): toy-sized for the smoke profile (e.g. a smoke run on SLURM)
RESOURCES = config["smoke_resources"] if PROFILE == "smoke" else config["resources"]


def _load_cells():
    """The cells of cells.yaml and the ablation variants of ablations.yaml (if any), resolved."""
    try:
        cells = list_cells(config["params_dir"])
        variants = list_variants(config["params_dir"])
        cfgs = {c["id"]: load_cell(c["id"], PROFILE, config["params_dir"]) for c in cells + variants}
    except ParamsError as e:
        raise WorkflowError(f"invalid cell configuration: {e}")
    return cells, variants, cfgs


CELL_LIST, VARIANT_LIST, CFG = _load_cells()
CELLS = [c["id"] for c in CELL_LIST]
VARIANTS = [v["id"] for v in VARIANT_LIST]
TABLE_CELLS = {t: [c["id"] for c in CELL_LIST if c["table"] == t] for t in (1, 2)}
TABLES = [f"{REPORTS}/table{t}.md" for t in (1, 2)]
REFERENCE = str(resources.files("klrpn") / "reference" / "paper_tables.yaml")  # what klrpn report reads
FIGURE3 = [f"{REPORTS}/figure3.{ext}" for ext in ("md", "png", "csv")]

# ---------------------------------------------------------------------------------------------
# seeds (docs/significance.md): every run is a (cell, seed) job, in the run folder of
# klrpn.layout.run_dir (seed 0's is the one the tables and Figure 3 read), trained with
# `klrpn train --seed N` for N > 0.
SEEDS = config["seeds"]  # the default target trains every cell of Tables 1-2 with each of these
REPORT_SEEDS = config["seed_reports"]["seeds"] or SEEDS  # significance, proposals, ablations


# the train / evaluate jobs' outputs: klrpn.layout's run folder with wildcards {seeddir}, {cell}
RUN_DIR = layout.run_dir_pattern(RESULTS)
SEEDDIR = layout.SEED_DIR_PATTERN
RUN_CELLS = "|".join(CELLS + VARIANTS)


def run_path(cell, seed):
    """The folder of one run of a cell or variant (klrpn.layout.run_dir)."""
    return layout.run_dir(RESULTS, cell, seed).as_posix()


def run_seed(wildcards):
    """The seed of a train / evaluate job (from its {seeddir} wildcard)."""
    return layout.seed_of_seed_dir(wildcards.seeddir)


def seed_option(wildcards):
    """` --seed N` for seed N > 0; nothing for seed 0, whose command stays the paper DAG's."""
    return layout.seed_option(run_seed(wildcards))


def seed_runs(cells, seeds, files=(layout.METRICS_NAME,)):
    return [layout.run_file(RESULTS, c, s, f).as_posix() for c in cells for s in seeds for f in files]


# The RPN / KL-RPN pairs of reports/significance.md and reports/proposals.md (paper_tables.yaml)
try:
    _pairs = config["seed_reports"]["pairs"]
    PAIRS = selected_pairs(None if _pairs == "all" else _pairs)
except ReportError as e:
    raise WorkflowError(f"config key 'seed_reports.pairs': {e}")
PAIR_CELLS = [c for p in PAIRS for c in (p["rpn"], p["klrpn"])]
for _cell in PAIR_CELLS:
    if _cell not in CFG:
        raise WorkflowError(f"config key 'seed_reports.pairs': {_cell} is not a cell of "
                            f"{config['params_dir']}/cells.yaml")

# reports/ablations.md: the variants, their base cell and the base's RPN partner (whose seed
# spread of KL-RPN - RPN the report prints beside the variants)
ABLATION_BASES = sorted({v["base"] for v in VARIANT_LIST})
if len(ABLATION_BASES) > 1:
    raise WorkflowError(f"{config['params_dir']}/ablations.yaml: the ablation report shows one "
                        f"base cell, got {ABLATION_BASES}")
_partners = [b.removesuffix("-klrpn") + "-rpn" for b in ABLATION_BASES if b.endswith("-klrpn")]
ABLATION_CELLS = [*ABLATION_BASES, *[c for c in _partners if c in CFG], *VARIANTS]

for _key in ("rpn", "klrpn"):
    _cell = config["figure3"][_key]
    if _cell not in CFG:
        raise WorkflowError(
            f"config key 'figure3.{_key}': {_cell!r} is not a cell of "
            f"{config['params_dir']}/cells.yaml"
        )
    if CFG[_cell]["model"]["proposal"] != _key:
        raise WorkflowError(
            f"config key 'figure3.{_key}': cell {_cell!r} uses proposal "
            f"{CFG[_cell]['model']['proposal']!r}, not {_key!r}"
        )


# ---------------------------------------------------------------------------------------------
# data: synthetic (smoke) or downloaded (paper); the locations come from the cells' params


def _synthetic_root():
    """The `klrpn data synth --root` every smoke cell reads: <root>/coco and <root>/VOCdevkit."""
    layout = {"coco": "coco", "voc": "VOCdevkit"}
    roots = set()
    for cell, cfg in CFG.items():
        root = Path(cfg["dataset"]["root"])
        if root.name != layout[cfg["dataset"]["format"]]:
            raise WorkflowError(
                f"cell {cell}: dataset.root {root} is not <synthetic root>/"
                f"{layout[cfg['dataset']['format']]} (the layout of `klrpn data synth`)"
            )
        roots.add(str(root.parent))
    if len(roots) != 1:
        raise WorkflowError(f"the smoke cells read synthetic data from several roots: {sorted(roots)}")
    return roots.pop()


SYNTHETIC_ROOT = _synthetic_root() if SYNTHETIC else None
MANIFEST = {e.name: e for e in read_manifest()}
DOWNLOAD_MARKER = layout.download_marker(DATA_ROOT, "{entry}").as_posix()


def data_inputs(cell):
    """What training/evaluating `cell` reads: the synthetic tree, or the download markers of its
    dataset group and (if pretrained) its backbone's ImageNet weights."""
    cfg = CFG[cell]
    if SYNTHETIC:
        return [SYNTHETIC_ROOT]
    root = Path(cfg["dataset"]["root"])
    if Path(DATA_ROOT) not in (root, *root.parents):
        raise WorkflowError(
            f"cell {cell}: dataset.root {root} lies outside config data_root {DATA_ROOT}"
        )
    try:
        names = download_entries(cfg)  # the same entries `klrpn data check` (DVC) requires
    except ValueError as e:
        raise WorkflowError(f"cell {cell}: {e}")
    return [DOWNLOAD_MARKER.format(entry=n) for n in names]


DATASETS = sorted({cfg["dataset"]["name"] for cfg in CFG.values()})


def data_check_inputs(wildcards):
    """What the data check of one dataset reads: the data of every cell reading it (downloads
    first, so that the check sees them)."""
    return sorted({ancient(f) for cell, cfg in CFG.items()
                   if cfg["dataset"]["name"] == wildcards.dataset for f in data_inputs(cell)})


def data_check_of(cell):
    """The pre-flight a training job of `cell` waits for: that of the dataset it reads."""
    return layout.data_check_file(RESULTS, CFG[cell]["dataset"]["name"]).as_posix()


def params_files(cell):
    """The params files merged into `cell`'s configuration (klrpn.config `sources`)."""
    return CFG[cell]["sources"]


# ---------------------------------------------------------------------------------------------
# resources


def cell_gpus(cell):
    return int(CFG[cell]["train"]["gpus"])


def train_threads(wildcards):
    r = RESOURCES["train"]
    return max(r["min_threads"], cell_gpus(wildcards.cell) * r["cpus_per_gpu"])


def train_resource(key):
    return lambda wildcards: RESOURCES["train"][key][CFG[wildcards.cell]["dataset"]["name"]]


def evaluate_resource(key):
    return lambda wildcards: RESOURCES["evaluate"][key][
        CFG[wildcards.cell]["dataset"]["name"]
    ]


def table_metrics(wildcards):
    return seed_runs(TABLE_CELLS[int(wildcards.table)], [0])
