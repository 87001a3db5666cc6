"""The reports of ``klrpn report``: the paper's Tables 1-2 and, over seeds, significance,
proposal quality and ablations. Every report reads runs through
:func:`klrpn.reports.common.collect_runs` and renders a ``klrpn/templates`` file through
:func:`klrpn.render.template`."""

from klrpn.paper import ReportError
from klrpn.reports.ablations import render_ablations, write_ablations
from klrpn.reports.common import collect_runs, load_metrics
from klrpn.reports.proposals import render_proposals, write_proposals
from klrpn.reports.significance import render_significance, write_significance
from klrpn.reports.tables import render_table, write_table

__all__ = [
    "ReportError", "collect_runs", "load_metrics",
    "render_table", "write_table", "render_significance", "write_significance",
    "render_proposals", "write_proposals", "render_ablations", "write_ablations",
]
