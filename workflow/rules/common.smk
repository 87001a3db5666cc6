# Shared helpers: the cells (params/cells.yaml, resolved with klrpn.config), their data, params
# files and resources. Functions only; rules live in the stage files.
import os
import sys
from importlib import resources
from pathlib import Path

from klrpn.config import ParamsError, list_cells, load_cell
from klrpn.data.check import SYNTHETIC_PROFILES, download_entries
from klrpn.data.download import read_manifest

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
SYNTHETIC = PROFILE in SYNTHETIC_PROFILES  # the smoke params point every dataset at `klrpn data synth` output
# job sizes (threads, mem_mb, runtime): toy-sized for the smoke profile (e.g. a smoke run on SLURM)
RESOURCES = config["smoke_resources"] if PROFILE == "smoke" else config["resources"]


def _load_cells():
    try:
        cells = list_cells(config["params_dir"])
        cfgs = {c["id"]: load_cell(c["id"], PROFILE, config["params_dir"]) for c in cells}
    except ParamsError as e:
        raise WorkflowError(f"invalid cell configuration: {e}")
    return cells, cfgs


CELL_LIST, CFG = _load_cells()
CELLS = [c["id"] for c in CELL_LIST]
TABLE_CELLS = {t: [c["id"] for c in CELL_LIST if c["table"] == t] for t in (1, 2)}
TABLES = [f"{REPORTS}/table{t}.md" for t in (1, 2)]
REFERENCE = str(resources.files("klrpn") / "reference" / "paper_tables.yaml")  # what klrpn report reads
FIGURE3 = [f"{REPORTS}/figure3.{ext}" for ext in ("md", "png", "csv")]

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
DOWNLOAD_MARKER = f"{DATA_ROOT}/.klrpn-downloads/{{entry}}.json"


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
    return [f"{RESULTS}/{cell}/metrics.json" for cell in TABLE_CELLS[int(wildcards.table)]]
