"""The one Jinja environment of klrpn's markdown outputs (``klrpn/templates/*.j2``).

Reports (:mod:`klrpn.reports`) and analyses (:mod:`klrpn.figure3`) render through
:func:`template`. Undefined variables are errors; block tags leave no blank lines
(``trim_blocks``, ``lstrip_blocks``) and a template's final newline is kept.
"""

from __future__ import annotations

import functools

import jinja2


@functools.cache
def environment() -> jinja2.Environment:
    """The shared environment, loading the package's ``templates`` folder."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("klrpn", "templates"),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True, autoescape=False)


def template(name: str) -> jinja2.Template:
    """The template ``klrpn/templates/<name>``, e.g. ``template("table.md.j2")``."""
    return environment().get_template(name)
