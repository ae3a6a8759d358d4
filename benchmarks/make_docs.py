"""Generate ``docs/benchmarks.md`` from the recorded results in ``benchmarks/results/*.json``.

    python benchmarks/make_docs.py [--check]

Every number in the generated page comes from a result file that a benchmark script wrote
(``common.write_result``): the page's prose lives in ``benchmarks/docs/benchmarks.md.j2``
and refers to the results by name; a result without a section of its own is listed at the
end with all its numbers. ``--check`` fails if the page on disk is not what the results
give (so a hand edit, or a result recorded without regenerating the page, shows).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import jinja2

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
TEMPLATES_DIR = HERE / "docs"
PAGE = HERE.parent / "docs" / "benchmarks.md"


def load_results(results_dir: Path = RESULTS_DIR) -> dict[str, dict]:
    """Every result file written by ``common.write_result``, by name."""
    results = {}
    for path in sorted(results_dir.glob("*.json")):
        record = json.loads(path.read_text())
        if {"name", "command", "generator", "results"} <= set(record):
            results[record["name"]] = record
    return results


def _number(value, digits: int = 3) -> str:
    """A number as a table shows it: ``digits`` significant decimals, no float noise."""
    if isinstance(value, (list, tuple)):
        return ", ".join(_number(v, digits) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def _table(rows: list[dict], columns: list[str] | None = None, digits: int = 3) -> str:
    """A Markdown table of a list of dicts (columns: the given ones, else the first row's)."""
    if not rows:
        return "(no rows)"
    columns = columns or list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    lines += ["| " + " | ".join(_number(row.get(c, ""), digits) for c in columns) + " |"
              for row in rows]
    return "\n".join(lines)


def _flatten(value, key: str) -> list[tuple[str, object]]:
    """``{"a": {"b": 1}}`` -> ``[("a.b", 1)]``; lists of numbers stay whole."""
    if isinstance(value, dict):
        return [item for inner_key, inner in value.items()
                for item in _flatten(inner, f"{key}.{inner_key}")]
    return [(key, value)]


def _generic(record: dict) -> str:
    """All numbers of a result that has no section of its own in the template."""
    parts, scalars = [], []
    for key, value in record["results"].items():
        if isinstance(value, list) and value and all(isinstance(r, dict) for r in value):
            parts.append(f"`{key}`:\n\n" + _table(value))
        else:
            scalars += _flatten(value, key)
    if scalars:
        parts.insert(0, "\n".join(f"- `{k}`: {_number(v)}" for k, v in scalars))
    return "\n\n".join(parts)


def _select(rows: list[dict], **where) -> list[dict]:
    return [r for r in rows if all(r.get(k) == v for k, v in where.items())]


def render(results: dict[str, dict]) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters.update(n=_number, table=_table, pct=lambda v, d=1: f"{100 * v:.{d}f}")
    env.globals.update(select=_select, generic=_generic)
    template = env.get_template("benchmarks.md.j2")
    used = set()

    def result(name: str) -> dict:
        used.add(name)
        return results[name]

    body = template.render(r=result, has=lambda name: name in results)
    rest = [results[n] for n in sorted(results) if n not in used]
    if rest:
        body += "\n## Other recorded results\n"
        for record in rest:
            header = env.get_template("_header.md.j2").render(x=record)
            body += f"\n### {record['name']}\n\n{header}\n{_generic(record)}\n"
    return body


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true",
                        help="fail if docs/benchmarks.md differs from what the results give")
    args = parser.parse_args(argv)
    page = render(load_results())
    if args.check:
        if not PAGE.is_file() or PAGE.read_text() != page:
            print(f"{PAGE} is not the page that benchmarks/results/*.json give; run "
                  "`python benchmarks/make_docs.py`", file=sys.stderr)
            return 1
        return 0
    PAGE.write_text(page)
    print(f"wrote {PAGE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
