"""HTML helpers: escaping, JSON safe to embed in <script>, safe file names, and the page shell."""

from __future__ import annotations

import hashlib
import html
import json
import re

# Nothing may be fetched at view time: the pages only use inline styles and scripts.
CSP = "default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:"

BASE_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0 auto;padding:1em 1.5em;max-width:1400px;color:#222}
h1{font-size:1.4em;margin:.2em 0 .6em}h2{font-size:1.15em;margin:1.2em 0 .4em}
a{color:#0550ae}code,pre{font:12.5px/1.4 ui-monospace,monospace}
pre{white-space:pre-wrap;word-break:break-word;margin:0}
del{background:#ffd7d5}ins{background:#ccffd8;text-decoration:none}
table{border-collapse:collapse}td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:left;vertical-align:top}
th{background:#f6f8fa}.num{text-align:right;font-variant-numeric:tabular-nums}
.muted{color:#777}.cards{display:flex;flex-wrap:wrap;gap:.6em}
.card{border:1px solid #ddd;border-radius:6px;padding:.4em .8em;min-width:8em}
.card b{display:block;font-size:1.3em}.charts{display:flex;flex-wrap:wrap;gap:1.2em}
.chart h3{font-size:.95em;margin:.2em 0}
"""


def esc(value) -> str:
    """Text for HTML element content or a quoted attribute value; None becomes ""."""
    return html.escape("" if value is None else str(value), quote=True)


def script_json(obj) -> str:
    """JSON to embed in <script type="application/json">: `<`, `>` and `&` are written as \\u003c etc.,
    so model text such as "</script>" or "<!--" cannot end or alter the script element."""
    text = json.dumps(obj, ensure_ascii=True, separators=(",", ":"))
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def safe_name(problem_id: str) -> str:
    """A file name for a problem's page: a short ASCII slug of the id plus a hash of the whole id,
    so ids differing only in dropped characters (or in case) never collide and no id reaches the path."""
    slug = re.sub(r"[^a-z0-9]+", "-", str(problem_id).lower()).strip("-")[:40].strip("-") or "problem"
    digest = hashlib.sha1(str(problem_id).encode("utf-8")).hexdigest()[:10]
    return f"{slug}-{digest}.html"


def clip(text, width: int) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= width else text[: width - 1] + "\u2026"


def num_cell(value, digits: int = 3) -> str:
    """A right-aligned table cell; None shows as a muted dash."""
    if value is None:
        return '<td class="num muted">-</td>'
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return f'<td class="num">{esc(text)}</td>'


def table(head: list[str], rows: list[str]) -> str:
    """A table from its header texts and ready-made <tr> rows."""
    th = "".join(f"<th>{esc(h)}</th>" for h in head)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{''.join(rows)}</tbody></table>"


def page(title: str, body: str, *, css: str = "", script: str = "", data: dict | None = None) -> str:
    """A complete standalone page. `data` maps element ids to objects embedded as JSON scripts."""
    blobs = "".join(
        f'<script type="application/json" id="{esc(key)}">{script_json(value)}</script>\n'
        for key, value in (data or {}).items()
    )
    js = f"<script>\n{script}\n</script>\n" if script else ""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">\n'
        '<meta name="viewport" content="width=device-width,initial-scale=1">\n'
        '<link rel="icon" href="data:,">\n'
        f"<title>{esc(title)}</title>\n<style>{BASE_CSS}{css}</style></head>\n"
        f"<body>\n{body}\n{blobs}{js}</body></html>\n"
    )
