"""Cell configurations: load, merge and validate the YAML files under ``params/``.

A cell's configuration is the merge, in order, of

1. ``defaults.yaml``;
2. the files the cell file lists under ``extends:`` (each may extend others, depth first);
3. ``cells/<cell_id>.yaml`` itself;
4. the profile ``profiles/<profile>.yaml`` (none for ``paper``): its ``all:`` section, then
   ``by_format.<dataset.format>``, ``by_backbone.<model.backbone>``,
   ``by_detector.<model.detector>`` and ``by_proposal.<model.proposal>``, then the entries of
   ``by_combination`` (a list of ``{when: {<section>: <value>, ...}, set: {...}}``, e.g.
   ``when: {backbone: resnet101, proposal: rpn}``) whose every ``when`` value matches the cell,
   in list order: the one way to override a pair (or more) of these values together.

Every file is validated on its own against ``klrpn/schemas/params.schema.yaml`` (so an error
names the file that holds the bad key), then the merged result is validated whole.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from klrpn.layout import CELLS_INDEX

PROFILES_DIR = "profiles"
ABLATIONS_INDEX = "ablations.yaml"
ABLATIONS_DIR = "ablations"
VARIANT_SEP = "--"
PROFILE_SECTIONS = (
    ("by_format", ("dataset", "format")),
    ("by_backbone", ("model", "backbone")),
    ("by_detector", ("model", "detector")),
    ("by_proposal", ("model", "proposal")),
)
COMBINATION_SECTION = "by_combination"
_SCHEMA_PATH = Path(__file__).with_name("schemas") / "params.schema.yaml"


class ParamsError(ValueError):
    """A params file is missing, malformed, or holds an unknown key or an impossible value."""


def default_params_dir() -> Path:
    """``$KLRPN_PARAMS`` if set, else ``./params`` (relative to the working directory)."""
    return Path(os.environ.get("KLRPN_PARAMS", "params"))


def list_cells(params_dir: str | os.PathLike | None = None) -> list[dict]:
    """The cells of ``cells.yaml`` (a mapping ``<cell id>: {table: 1|2}``), in file order, as a
    list of ``{"id": str, "table": int}``."""
    path = Path(params_dir or default_params_dir()) / CELLS_INDEX
    data = _read_yaml(path)
    cells = data.get("cells") if isinstance(data, dict) else None
    if not isinstance(cells, dict) or not cells:
        raise ParamsError(f"{path}: key 'cells' must be a non-empty mapping <cell id>: {{table: 1|2}}")
    for cell_id, entry in cells.items():
        if not (isinstance(cell_id, str) and isinstance(entry, dict) and set(entry) == {"table"}
                and entry["table"] in (1, 2)):
            raise ParamsError(f"{path}: key 'cells.{cell_id}' must be {{table: 1|2}}, got {entry!r}")
    return [{"id": cell_id, "table": entry["table"]} for cell_id, entry in cells.items()]


def list_variants(params_dir: str | os.PathLike | None = None) -> list[dict]:
    """The ablation variants of ``ablations.yaml`` (none if the file is absent): a list of
    ``{"id", "base", "factor", "value", "base_value"}``. A variant ``<base>--<name>`` is the cell
    ``<base>`` with the few keys of ``ablations/<id>.yaml`` changed; that file extends exactly
    ``cells/<base>.yaml``, so the base cell stays the one source of its other values."""
    params_dir = Path(params_dir or default_params_dir())
    path = params_dir / ABLATIONS_INDEX
    if not path.is_file():
        return []
    data = _read_yaml(path)
    variants = data.get("variants") if isinstance(data, dict) else None
    if not isinstance(variants, list) or not variants:
        raise ParamsError(f"{path}: key 'variants' must be a non-empty list")
    cells = {c["id"] for c in list_cells(params_dir)}
    keys = {"id", "base", "factor", "value", "base_value"}
    seen = set()
    for i, v in enumerate(variants):
        if not (isinstance(v, dict) and set(v) == keys and all(isinstance(v[k], str) for k in keys)):
            raise ParamsError(f"{path}: key 'variants[{i}]' must be {{{', '.join(sorted(keys))}}} "
                              f"(strings), got {v!r}")
        if v["base"] not in cells:
            raise ParamsError(f"{path}: key 'variants[{i}].base': {v['base']!r} is not a cell of "
                              f"{params_dir / CELLS_INDEX}")
        name = v["id"][len(v["base"]) + len(VARIANT_SEP):]
        if not (v["id"].startswith(v["base"] + VARIANT_SEP) and name
                and name.replace("_", "").isalnum() and name.islower()):
            raise ParamsError(f"{path}: key 'variants[{i}].id': {v['id']!r} must be "
                              f"'{v['base']}{VARIANT_SEP}<name>' (lower-case letters, digits, _)")
        if v["id"] in seen:
            raise ParamsError(f"{path}: key 'variants[{i}].id': {v['id']!r} is listed twice")
        seen.add(v["id"])
    return variants


def load_cell(cell_id: str, profile: str = "paper",
              params_dir: str | os.PathLike | None = None, seed: int | None = None) -> dict[str, Any]:
    """Resolve and validate the configuration of one cell or ablation variant.

    ``seed`` (if given) replaces the params' ``seed`` after every file is merged (a run of the
    cell with another seed: its own params hash; seed 0 resolves exactly as the params do).

    Returns a nested dict (see docs/architecture.md) with ``cell``, ``base_cell`` (the cell
    itself, or the cell an ablation variant extends), ``profile``, ``table``, ``sources`` (the
    files merged, in order) and ``params_hash`` (sha256 of the canonical JSON of everything
    else but ``recipe``, see :func:`params_hash`) added.
    """
    params_dir = Path(params_dir or default_params_dir())
    tables = {c["id"]: c["table"] for c in list_cells(params_dir)}
    if cell_id in tables:
        base, cell_file = cell_id, f"cells/{cell_id}.yaml"
    else:
        variants = {v["id"]: v for v in list_variants(params_dir)}
        if cell_id not in variants:
            raise ParamsError(f"{params_dir / CELLS_INDEX}: unknown cell {cell_id!r}; "
                              f"known: {', '.join(tables)}"
                              + (f"; ablation variants: {', '.join(variants)}" if variants else ""))
        base, cell_file = variants[cell_id]["base"], f"{ABLATIONS_DIR}/{cell_id}.yaml"
        parents = (_read_yaml(params_dir / cell_file) or {}).get("extends")
        if parents != [f"cells/{base}.yaml"]:
            raise ParamsError(f"{params_dir / cell_file}: key 'extends' must be "
                              f"[cells/{base}.yaml] (the variant's base cell), got {parents!r}")
    schema = _schema()
    cfg: dict = {}
    origin: dict[str, Path] = {}
    sources: list[Path] = []

    def merge_file(rel: str, seen: tuple[str, ...] = ()) -> None:
        if rel in seen:
            raise ParamsError(f"{params_dir / seen[-1]}: 'extends' cycle through {rel}")
        path = params_dir / rel
        data = _validated_file(path, schema)
        for parent in data.pop("extends", []):
            merge_file(parent, seen + (rel,))
        _merge(cfg, data, origin, path)
        sources.append(path)

    merge_file("defaults.yaml")
    merge_file(cell_file)
    if profile != "paper":
        _apply_profile(cfg, origin, sources, params_dir / PROFILES_DIR / f"{profile}.yaml", schema)

    if seed is not None:
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise ParamsError(f"seed must be an integer >= 0, got {seed!r}")
        cfg["seed"] = seed
        origin["seed"] = "the seed argument"
    cfg["table"] = tables[base]
    _validate(cfg, schema, lambda key: origin.get(key, params_dir / cell_file))
    _check_consistency(cfg, base, origin)
    cfg["params_hash"] = params_hash(cfg)
    cfg.update(cell=cell_id, base_cell=base, profile=profile, sources=[str(p) for p in sources])
    return cfg


def params_hash(cfg: dict) -> str:
    """sha256 of the canonical JSON of ``cfg`` without ``recipe`` (the citations of where the
    schedule and scales come from: editing one does not make a trained run stale)."""
    hashed = {k: v for k, v in cfg.items() if k != "recipe"}
    return hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()


def recipe_of(cfg: dict) -> dict:
    """The schedule and image scales a resolved cell trains with, and where they come from
    (its ``recipe``): ``metrics.json`` ``recipe``, rendered in the reports."""
    t, inp = cfg["train"]["schedule"], cfg["input"]
    return {"schedule": {"unit": t["unit"], "length": int(t["length"]),
                         "steps": [int(s) for s in t["steps"]]},
            "train_min_size": [int(s) for s in inp["min_size"]],
            "test_min_size": int(inp["test_min_size"]),
            "max_size": None if inp["max_size"] is None else int(inp["max_size"]),
            "sources": {"schedule": " ".join(cfg["recipe"]["schedule"].split()),
                        "scales": " ".join(cfg["recipe"]["scales"].split())}}


def _apply_profile(cfg: dict, origin: dict, sources: list, path: Path, schema: dict) -> None:
    data = _read_yaml(path)
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: a profile must be a mapping with 'all' and 'by_*' sections")
    allowed = {"all", COMBINATION_SECTION} | {name for name, _ in PROFILE_SECTIONS}
    for key in data:
        if key not in allowed:
            raise ParamsError(f"{path}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
    sections = [("all", data.get("all") or {})]
    for name, (group, field) in PROFILE_SECTIONS:
        table = data.get(name) or {}
        if not isinstance(table, dict):
            raise ParamsError(f"{path}: key {name!r} must map values of {group}.{field} to overrides")
        sections.append((f"{name}.{cfg[group][field]}", table.get(cfg[group][field]) or {}))
    for i, (when, section) in enumerate(_combinations(data.get(COMBINATION_SECTION), path, schema)):
        if all(cfg[group][field] == when[name[len("by_"):]]
               for name, (group, field) in PROFILE_SECTIONS if name[len("by_"):] in when):
            sections.append((f"{COMBINATION_SECTION}[{i}]", section))
    for label, section in sections:
        _validate(section, _without_required(schema), lambda key, label=label: f"{path} [{label}]")
        _merge(cfg, copy.deepcopy(section), origin, path)
    sources.append(path)


def _combinations(entries: Any, path: Path, schema: dict) -> list[tuple[dict, dict]]:
    """The ``by_combination`` entries of a profile as ``(when, set)`` pairs, checked: ``when``
    names at least one of format / backbone / detector / proposal, each with a value the schema
    allows there (a typo would otherwise never match, silently)."""
    if entries is None:
        return []
    fields = {name[len("by_"):]: (group, field) for name, (group, field) in PROFILE_SECTIONS}
    if not isinstance(entries, list):
        raise ParamsError(f"{path}: key {COMBINATION_SECTION!r} must be a list of "
                          "{when: {...}, set: {...}} entries")
    pairs = []
    for i, entry in enumerate(entries):
        where = f"{path} [{COMBINATION_SECTION}[{i}]]"
        if not isinstance(entry, dict) or set(entry) != {"when", "set"}:
            raise ParamsError(f"{where}: an entry must be a mapping with exactly the keys "
                              f"'when' and 'set', got {entry!r}")
        when, overrides = entry["when"], entry["set"]
        if not isinstance(when, dict) or not when:
            raise ParamsError(f"{where}: key 'when' must be a non-empty mapping of "
                              f"{', '.join(fields)} to values, got {when!r}")
        for key, value in when.items():
            if key not in fields:
                raise ParamsError(f"{where}: unknown key 'when.{key}' (allowed: {', '.join(fields)})")
            group, field = fields[key]
            choices = schema["properties"][group]["properties"][field]["enum"]
            if value not in choices:
                raise ParamsError(f"{where}: key 'when.{key}': {value!r} is not one of {choices}")
        if not isinstance(overrides, dict) or not overrides:
            raise ParamsError(f"{where}: key 'set' must be a non-empty mapping of overrides")
        # every entry, matching this cell or not: a bad key fails for every cell
        _validate(overrides, _without_required(schema), lambda key, where=where: where)
        pairs.append((when, overrides))
    return pairs


def _check_consistency(cfg: dict, cell_id: str, origin: dict) -> None:
    """Checks a schema cannot express: relations between keys."""
    m, t, d = cfg["model"], cfg["train"], cfg["dataset"]

    def fail(key: str, msg: str) -> None:
        raise ParamsError(f"{origin.get(key, '?')}: key {key!r}: {msg}")

    expected = f"{d['name']}-{m['detector']}-{m['backbone']}-{m['proposal']}"
    if expected != cell_id:
        fail("model.detector", f"cell {cell_id!r} resolves to {expected!r} "
                               "({train set}-{detector}-{backbone}-{proposal})")
    if m["rpn"]["bg_iou_thresh"] > m["rpn"]["fg_iou_thresh"]:
        fail("model.rpn.bg_iou_thresh", "must not exceed model.rpn.fg_iou_thresh")
    if m["roi"]["bg_iou_thresh"] > m["roi"]["fg_iou_thresh"]:
        fail("model.roi.bg_iou_thresh", "must not exceed model.roi.fg_iou_thresh")
    if m["rpn"]["post_nms_top_n_test"] > m["rpn"]["pre_nms_top_n_test"]:
        fail("model.rpn.post_nms_top_n_test", "must not exceed model.rpn.pre_nms_top_n_test")
    if m["rpn"]["post_nms_top_n_train"] > m["rpn"]["pre_nms_top_n_train"]:
        fail("model.rpn.post_nms_top_n_train", "must not exceed model.rpn.pre_nms_top_n_train")
    inp = cfg["input"]
    if inp["max_size"] is not None and inp["max_size"] < max(*inp["min_size"], inp["test_min_size"]):
        fail("input.max_size", f"{inp['max_size']} is below a short side of input.min_size / "
                               "input.test_min_size (null: no cap)")
    steps = t["schedule"]["steps"]
    if steps != sorted(set(steps)) or any(s >= t["schedule"]["length"] for s in steps):
        fail("train.schedule.steps", f"must be increasing and below train.schedule.length "
                                     f"({t['schedule']['length']}), got {steps}")
    if t["gpus"] > 1 and t["batch_size"] % t["gpus"]:
        fail("train.batch_size", f"{t['batch_size']} cannot be split evenly over {t['gpus']} GPUs")
    if d["format"] == "voc" and (d["classes"] is None or len(d["classes"]) != d["num_classes"]):
        fail("dataset.classes", f"VOC datasets need exactly num_classes ({d['num_classes']}) class names")
    if m["detector"] == "rfcn" and m["backbone"] != "resnet101":
        fail("model.backbone", "R-FCN is built on ResNet-101 only")
    if m["backbone"] == "vgg16" and m["frozen"] not in ("none", "conv1-conv2"):
        fail("model.frozen", f"{m['frozen']!r} names ResNet layers, but the backbone is VGG-16")
    if m["backbone"] == "resnet101" and m["frozen"] == "conv1-conv2":
        fail("model.frozen", "'conv1-conv2' names VGG layers, but the backbone is ResNet-101")


# --- file handling and validation -------------------------------------------------------------

def _read_yaml(path: Path) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return yaml.safe_load(f)
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None


def _validated_file(path: Path, schema: dict) -> dict:
    data = _read_yaml(path)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: a params file must be a mapping, got {type(data).__name__}")
    _validate(data, _without_required(schema), lambda key: path)
    return data


def _validate(data: dict, schema: dict, where) -> None:
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(data),
                    key=lambda e: list(map(str, e.absolute_path)))
    if not errors:
        return
    e = errors[0]
    path = [str(p) for p in e.absolute_path]
    if e.validator == "additionalProperties":
        extra = sorted(set(e.instance) - set(e.schema.get("properties", {})))
        key = ".".join(path + [extra[0]])
        msg = f"unknown key {key!r}"
    elif e.validator == "required":
        missing = [k for k in e.validator_value if k not in e.instance]
        key = ".".join(path + [missing[0]])
        msg = f"missing key {key!r}"
    else:
        key = ".".join(path)
        msg = f"key {key!r}: {_describe(e)}"
    raise ParamsError(f"{where(key)}: {msg}")


def _describe(e: jsonschema.ValidationError) -> str:
    if e.validator == "type":
        return f"expected {e.validator_value}, got {type(e.instance).__name__} {e.instance!r}"
    if e.validator in ("oneOf", "anyOf"):
        return f"{e.instance!r} is not a valid value here"
    return e.message


def _merge(dst: dict, src: dict, origin: dict, path: Path, prefix: str = "") -> None:
    """Recursive dict update; lists and scalars replace. Records the file of every leaf."""
    for key, value in src.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge(dst[key], value, origin, path, dotted + ".")
        else:
            dst[key] = copy.deepcopy(value)
            origin[dotted] = path
            for sub in _leaves(value, dotted):
                origin[sub] = path


def _leaves(value: Any, prefix: str):
    if isinstance(value, dict):
        for k, v in value.items():
            yield f"{prefix}.{k}"
            yield from _leaves(v, f"{prefix}.{k}")


_SCHEMA_CACHE: dict = {}


def _schema() -> dict:
    if "full" not in _SCHEMA_CACHE:
        _SCHEMA_CACHE["full"] = yaml.safe_load(_SCHEMA_PATH.read_text(encoding="utf-8"))
    return _SCHEMA_CACHE["full"]


def _without_required(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _without_required(v) for k, v in schema.items() if k != "required"}
    if isinstance(schema, list):
        return [_without_required(v) for v in schema]
    return schema
