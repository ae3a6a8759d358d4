"""Render the participant report's jinja2 templates (``qsmflow/reports/templates/``).

The templates hold all of the page's markup and its stylesheet; this module only sets up
the environment: values are autoescaped, an undefined name is an error rather than an
empty string, and the stylesheet is included into the page so that it stays one file
that reads offline.
"""

from __future__ import annotations

from functools import cache

import jinja2

PAGE_TEMPLATE = "report.html.j2"


@cache
def environment() -> jinja2.Environment:
    """The report's template environment (autoescape on, strict undefined names)."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("qsmflow.reports", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render_page(context: dict) -> str:
    """The HTML of one participant's page from the context built by
    :func:`qsmflow.reports.html.write_participant_report`."""
    return environment().get_template(PAGE_TEMPLATE).render(**context)
