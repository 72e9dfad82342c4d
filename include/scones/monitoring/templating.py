"""Jinja2 for the monitoring pages: the report (html.py) and the UI plugin's own pages (monitoring_view.py).

Autoescape is on for every template, so each value a template prints is HTML-escaped unless the code marks it
safe, which none of it does; StrictUndefined turns a misspelt or missing variable into an error instead of an
empty string. The templates are files of this package (templates/*.html.j2), read when first rendered.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2

TEMPLATE_DIR = Path(__file__).with_name("templates")


@functools.cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def render(template_name: str, **context: Any) -> str:
    return environment().get_template(template_name).render(**context)
