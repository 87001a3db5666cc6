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
   in list order: the one way to override a pair (or more) of these values together;
5. the ``seed`` argument, then the command line's ``--set KEY=VALUE`` overrides
   (:func:`parse_overrides`).

Every file is validated on its own against ``klrpn/schemas/params.schema.yaml`` (so an error
names the file that holds the bad key), and so are the overrides (an error names the ``--set``
item); then the merged result is validated whole.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any, Iterable, Mapping

import jsonschema
import yaml

from klrpn.layout import CELLS_INDEX, check_seed

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
              params_dir: str | os.PathLike | None = None, seed: int | None = None,
              overrides: Iterable[str] | Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Resolve and validate the configuration of one cell or ablation variant.

    ``seed`` (if given) replaces the params' ``seed`` after every file is merged (a run of the
    cell with another seed: its own params hash; seed 0 resolves exactly as the params do).
    ``overrides`` (``--set`` items ``"KEY=VALUE"``, or a ``{dotted key: value}`` mapping such as
    a resolved config's ``overrides``) are applied last (:func:`parse_overrides`).

    Returns a nested dict (see docs/architecture.md) with ``cell``, ``base_cell`` (the cell
    itself, or the cell an ablation variant extends), ``profile``, ``table``, ``sources`` (the
    files merged, in order), ``overrides`` (the canonical ``{dotted key: value}`` of the
    overrides applied, ``{}`` without any) and ``params_hash`` (sha256 of the canonical JSON of
    everything else but ``recipe``, see :func:`params_hash`) added.
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
        try:
            check_seed(seed)
        except ValueError as err:
            raise ParamsError(str(err)) from None
        cfg["seed"] = seed
        origin["seed"] = "the seed argument"
    leaves = _apply_overrides(cfg, origin, overrides, schema)
    cfg["table"] = tables[base]
    _validate(cfg, schema, lambda key: origin.get(key, params_dir / cell_file))
    _check_consistency(cfg, base, origin)
    cfg["params_hash"] = params_hash(cfg)
    cfg.update(cell=cell_id, base_cell=base, profile=profile, sources=[str(p) for p in sources],
               overrides=leaves)
    return cfg


def params_hash(cfg: dict) -> str:
    """sha256 of the canonical JSON of ``cfg`` without ``recipe`` (the citations of where the
    schedule and scales come from: editing one does not make a trained run stale)."""
    hashed = {k: v for k, v in cfg.items() if k != "recipe"}
    return hashlib.sha256(json.dumps(hashed, sort_keys=True).encode()).hexdigest()


# --- command-line overrides (--set KEY=VALUE) ---------------------------------------------------

SET_OPTION = "--set"
# keys an override may not set: what the cell id, the seed option or the params files decide
_NOT_SETTABLE = {
    "seed": "a run's seed is --seed N (its runs have folders of their own)",
    "table": "a cell's table is set in params/cells.yaml",
    "extends": "'extends' names params files; --set sets values",
    "dataset.name": "it is part of the cell id: train that cell instead",
    "model.detector": "it is part of the cell id: train that cell instead",
    "model.backbone": "it is part of the cell id: train that cell instead",
    "model.proposal": "it is part of the cell id: train that cell instead",
}
_KEY_PART = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _SetLoader(yaml.SafeLoader):
    """YAML for ``--set`` values: PyYAML's safe loader, but ``1e-3`` is a number (YAML 1.2; YAML
    1.1 wants ``1.0e-3``) and ``2024-01-01`` stays a string (no dates: params hold none)."""


_SetLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_SetLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def parse_overrides(items: Iterable[str] | Mapping[str, Any] | None) -> dict[str, Any]:
    """The canonical form of ``--set`` overrides: ``{dotted key: value}``, keys sorted.

    Each item is ``KEY=VALUE``: ``KEY`` a dotted params key (``train.lr``), ``VALUE`` read as
    YAML (``0.002`` and ``2e-3`` a float, ``[600, 800]`` a list, ``true`` a bool, ``null`` None,
    anything else a string). A mapping value is merged as a params file's section is, so it
    stands for its leaves: ``train.schedule={length: 10}`` is ``train.schedule.length=10``. Lists
    are set whole (``input.min_size=[600]``; no ``KEY.0`` / ``KEY[0]``). A later item for the same
    key wins. The keys are not checked against the schema here (:func:`load_cell` does)."""
    return dict(sorted(_parse_overrides(items)[0].items()))


def override_items(overrides: Mapping[str, Any]) -> list[str]:
    """``--set`` items (``KEY=VALUE``, the value as JSON, which YAML reads back) of a canonical
    overrides mapping: ``parse_overrides(override_items(o)) == o``."""
    return [f"{key}={json.dumps(value)}" for key, value in overrides.items()]


def _parse_overrides(items) -> tuple[dict[str, Any], dict[str, str]]:
    """``({dotted leaf key: value}, {dotted leaf key: the item it came from})``, in the order
    given (a later item replaces an earlier one's key)."""
    if not items:
        return {}, {}
    if isinstance(items, Mapping):
        items = override_items(items)
    leaves: dict[str, Any] = {}
    where: dict[str, str] = {}
    for item in items:
        label = f"{SET_OPTION} {item}"
        if not isinstance(item, str) or "=" not in item:
            raise ParamsError(f"{label}: expected KEY=VALUE, e.g. {SET_OPTION} train.lr=0.002")
        key, text = (part.strip() for part in item.split("=", 1))
        parts = key.split(".")
        if not key or not all(_KEY_PART.match(p) for p in parts):
            bad = next((p for p in parts if not _KEY_PART.match(p)), key)
            if re.search(r"\[|^[0-9]+$", bad):
                raise ParamsError(f"{label}: lists are set whole, not by element "
                                  f"(e.g. {SET_OPTION} input.min_size=[600,800])")
            raise ParamsError(f"{label}: {key!r} is not a dotted params key (e.g. train.lr)")
        try:
            value = yaml.load(text, Loader=_SetLoader)
        except yaml.YAMLError as e:
            why = " ".join(str(getattr(e, "problem", None) or e).split())
            raise ParamsError(f"{label}: the value is not valid YAML: {why}") from None
        for leaf, leaf_value in _flatten(key, value):
            leaves.pop(leaf, None)   # a repeated key moves to its last place
            leaves[leaf], where[leaf] = leaf_value, label
    for leaf, label in where.items():
        for name, why in _NOT_SETTABLE.items():
            if leaf == name or leaf.startswith(name + "."):
                raise ParamsError(f"{label}: key {name!r} cannot be set: {why}")
    return leaves, where


def _flatten(key: str, value: Any):
    """``(dotted key, value)`` of every non-mapping leaf of ``value`` under ``key``."""
    if isinstance(value, dict):
        for k, v in value.items():
            sub = str(k)
            if not _KEY_PART.match(sub):
                raise ParamsError(f"{SET_OPTION} {key}=...: {sub!r} is not a params key")
            yield from _flatten(f"{key}.{sub}", v)
    else:
        yield key, value


def _apply_overrides(cfg: dict, origin: dict, overrides, schema: dict) -> dict[str, Any]:
    """Validate ``overrides`` like a params file (an error names the ``--set`` item) and merge
    them into ``cfg``, recording each key's origin as its item. Returns the canonical form."""
    leaves, where = _parse_overrides(overrides)
    if not leaves:
        return {}
    nested: dict = {}
    for key, value in leaves.items():
        *parents, last = key.split(".")
        node = nested
        for i, part in enumerate(parents):
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ParamsError(f"{where[key]}: key {'.'.join(parents[:i + 1])!r} is not a "
                                  f"section (it is set to {node!r} by another {SET_OPTION})")
        if isinstance(node.get(last), dict):
            raise ParamsError(f"{where[key]}: key {key!r} is a section (another {SET_OPTION} sets "
                              f"a key in it); it cannot also be {value!r}")
        node[last] = value
    _validate(nested, _without_required(schema), lambda key: _label_of(key, where))
    for key, value in leaves.items():
        *parents, last = key.split(".")
        node = cfg
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = copy.deepcopy(value)
        origin[key] = where[key]
    return dict(sorted(leaves.items()))


def _label_of(key: str, where: dict[str, str]) -> str:
    """The ``--set`` item of ``key``, or of its longest parent or child set by one."""
    parts = key.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in where:
            return where[".".join(parts[:n])]
    return next((w for k, w in where.items() if k.startswith(key + ".")), SET_OPTION)


def known_keys(schema: dict | None = None) -> list[str]:
    """Every dotted key of the params schema (sections and leaves), e.g. ``train.lr``."""
    found: list[str] = []

    def walk(node: dict, prefix: str) -> None:
        for name, sub in (node.get("properties") or {}).items():
            found.append(prefix + name)
            if isinstance(sub, dict):
                walk(sub, f"{prefix}{name}.")

    walk(schema or _schema(), "")
    return found


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
        close = difflib.get_close_matches(key, known_keys(), n=1, cutoff=0.75)
        if close:
            msg += f" (did you mean {close[0]!r}?)"
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
