"""HTML pages from the jinja2 templates in export/templates, autoescaped: specimen ids, flags, file
names and errors reach a page as text, never as markup."""

from __future__ import annotations

from jinja2 import Environment, PackageLoader, StrictUndefined

_ENV = Environment(
    loader=PackageLoader("wsi_screen.export", "templates"), autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True
)
_ENV.filters["pct"] = lambda value: f"{value:.2%}"


def render(template: str, **context) -> str:
    return _ENV.get_template(template).render(**context)
