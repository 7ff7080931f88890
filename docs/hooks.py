"""MkDocs hooks: pages generated from the code, so that they cannot drift from it.

- ``<!-- config-reference -->`` in a page becomes the table of every configuration key, from
  :func:`ruralcov.template.reference` (the dataclasses, their defaults and help);
- the demo's map previews in ``maps/`` are published with the site (``img/``) without a copy
  in ``docs/``.
"""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parents[1]
PREVIEWS = ("province_villages.png", "county_largest_gap.png", "village_classes.png")


def _config_reference() -> str:
    from ruralcov.template import reference

    lines: list[str] = []
    for section, rows in reference().items():
        lines += [f"### `[{section}]`", "", "| key | default | meaning |", "|---|---|---|"]
        for key, default, text in rows:
            cell = text.replace("|", "\\|").replace("\n", " ")
            lines.append(f"| `{key}` | `{default}` | {cell} |")
        lines.append("")
    return "\n".join(lines)


def on_page_markdown(markdown: str, page, config, files) -> str:  # noqa: ANN001 - MkDocs API
    if "<!-- config-reference -->" in markdown:
        markdown = markdown.replace("<!-- config-reference -->", _config_reference())
    return markdown


def on_files(files, config):  # noqa: ANN001, ANN201 - MkDocs API
    for name in PREVIEWS:
        files.append(File.generated(config, f"img/{name}", abs_src_path=str(ROOT / "maps" / name)))
    return files
