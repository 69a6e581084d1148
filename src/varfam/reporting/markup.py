"""The HTML of varfam's pages: one style sheet and the small pieces every page is made of.

Every page (a run's ``report.html``, ``varfam compare --html``) is one self-contained
file: its style sheet and its two short scripts are inline, its pictures are PNGs
embedded as ``data:`` URLs, and nothing is fetched (no font, no script, no image from
anywhere else). Links to papers are plain ``<a href>`` that nothing follows unless
the reader clicks them.

The style sheet is written for four readers: a 1280-pixel screen (the headline card
and its pictures side by side, the first thing seen), a phone (one column, tables
scroll sideways), a dark-mode browser (dark page, pictures kept on a light card so
that their white backgrounds stay legible) and a printer (every folded section
opened, no buttons, no figure cut across pages).

>>> print(cell_table([("a", "1 < 2")]))
<div class="scroll"><table><tbody><tr><th>a</th><td>1 &lt; 2</td></tr></tbody></table></div>
"""

from __future__ import annotations

import base64
import html
import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "STYLE",
    "SCRIPT",
    "esc",
    "fmt",
    "img",
    "cell_table",
    "value_html",
    "details",
    "section",
    "copy_block",
    "toc",
    "document",
]

STYLE = """
:root{--bg:#fff;--fg:#1d2330;--muted:#5b6475;--card:#f5f6f8;--line:#d8dce3;--accent:#2251b8;
--good:#0b6b2f;--warn:#9a4f00;--paper:#fff;--mark:#fff3c4;color-scheme:light dark}
@media (prefers-color-scheme:dark){:root{--bg:#14171c;--fg:#e5e7eb;--muted:#a4acb9;
--card:#1e232a;--line:#38404b;--accent:#8ab4f8;--good:#81c995;--warn:#fbbc5b;--paper:#f4f5f7;
--mark:#4a3f12}}
*{box-sizing:border-box}
img{max-width:100%;height:auto}
body{margin:0;background:var(--bg);color:var(--fg);
font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
main{max-width:1240px;margin:0 auto;padding:10px 18px 48px}
a{color:var(--accent)}
h1{font-size:1.25rem;margin:0}
h2{font-size:1.1rem;margin:0 0 8px}
h3{font-size:.95rem;margin:4px 0}
header.top{display:flex;flex-wrap:wrap;align-items:baseline;gap:2px 14px;margin-bottom:8px}
header.top .sub{color:var(--muted);font-size:.9rem}
nav.toc{display:flex;flex-wrap:wrap;gap:4px 12px;font-size:.85rem;margin:10px 0 4px}
section{margin-top:22px;break-inside:avoid-page}
.card{background:var(--card);border:1px solid var(--line);border-radius:10px;padding:12px 16px}
.headline{display:grid;grid-template-columns:minmax(0,1fr) minmax(0,1.05fr);gap:14px 22px}
.parts{margin:0 0 8px;font-size:.92rem}
.parts b{font-weight:600}
.stats{display:grid;grid-template-columns:repeat(auto-fill,minmax(150px,1fr));gap:8px;margin:0}
.stat{background:var(--bg);border:1px solid var(--line);border-radius:8px;padding:6px 10px;
margin:0}
.stat dt{font-size:.78rem;color:var(--muted);margin:0}
.stat dd{margin:0;font-size:1.35rem;font-weight:650;font-variant-numeric:tabular-nums;
white-space:nowrap}
.stat dd small{font-size:.75rem;font-weight:400;color:var(--muted);white-space:normal;
display:inline-block;line-height:1.25}
.stat dd .se{font-size:.85rem;font-weight:500}
.facts{margin:8px 0 0;font-size:.88rem;color:var(--muted)}
ul.verdicts{margin:8px 0 0;padding-left:18px}
ul.verdicts li{color:var(--warn)}
ul.verdicts li.ok{color:var(--good)}
.shots{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-start;align-content:flex-start}
figure{margin:0;break-inside:avoid}
figure img{display:block;max-width:100%;height:auto;background:var(--paper);border-radius:4px}
figcaption{font-size:.8rem;color:var(--muted);margin-top:3px}
.shots figure.pixels{width:min(280px,100%)}
.shots figure.pixels img{width:100%}
.shots figure.wide img{width:100%}
.shots figure.wide{flex:1 1 100%}
img.pixels{image-rendering:pixelated}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:16px}
.grid.two{grid-template-columns:repeat(auto-fit,minmax(420px,1fr))}
.grid figure img{max-width:100%;width:auto}
p.note{color:var(--muted);font-size:.85rem;margin:4px 0 0}
.scroll{overflow-x:auto;max-width:100%}
table{border-collapse:collapse;font-size:.88rem;margin:4px 0}
th,td{border-bottom:1px solid var(--line);padding:3px 9px;text-align:left;vertical-align:top}
thead th{border-bottom:2px solid var(--line);white-space:nowrap}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
td.best{background:var(--mark);font-weight:700}
td.best::after{content:" \\2605";font-size:.75em}
table.inner{font-size:.82rem;margin:0}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.85rem}
pre{background:var(--bg);border:1px solid var(--line);border-radius:6px;padding:8px 10px;
overflow-x:auto;white-space:pre-wrap;word-break:break-all;margin:4px 0}
details{border:1px solid var(--line);border-radius:8px;padding:6px 12px;margin:8px 0}
details>summary{cursor:pointer;font-weight:600}
button.copy{font:inherit;font-size:.82rem;padding:2px 10px;border-radius:6px;cursor:pointer;
border:1px solid var(--line);background:var(--card);color:var(--fg)}
.copied{color:var(--good);font-size:.82rem;margin-left:6px}
@media (max-width:760px){main{padding:8px 10px 32px}.headline{grid-template-columns:1fr}
.shots figure.pixels{width:100%;max-width:320px}.grid,.grid.two{grid-template-columns:1fr}}
@media print{body{background:#fff;color:#000;font-size:11pt}main{max-width:none;padding:0}
nav.toc,button.copy,.copied{display:none}.card{border-color:#bbb}a{color:#000}
section{break-inside:auto}figure,table,.card{break-inside:avoid}
pre{white-space:pre-wrap}}
"""

#: The page's only script: the copy buttons, and folded sections opened for printing.
SCRIPT = """
document.querySelectorAll("button.copy").forEach(function (b) {
  b.addEventListener("click", function () {
    var text = document.getElementById(b.dataset.target).textContent;
    var done = function () {
      var s = b.nextElementSibling;
      if (s && s.classList.contains("copied")) { s.textContent = "copied"; }
    };
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(done, function () { fallback(text); done(); });
    } else { fallback(text); done(); }
  });
});
function fallback(text) {
  var t = document.createElement("textarea");
  t.value = text; document.body.appendChild(t); t.select();
  try { document.execCommand("copy"); } catch (e) {}
  document.body.removeChild(t);
}
window.addEventListener("beforeprint", function () {
  document.querySelectorAll("details").forEach(function (d) { d.open = true; });
});
"""


def esc(text: Any) -> str:
    """``text`` as HTML text (quotes escaped too)."""
    return html.escape(str(text))


def fmt(value: Any, digits: int = 2, se: Any = None) -> str:
    """A number for people: ``digits`` decimals, ``± se`` where given; ``–`` for nothing."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    if se is not None and isinstance(se, float) and math.isfinite(se):
        text += f" ± {se:.{digits}f}"
    return text


def img(png: bytes, alt: str, *, pixels: bool = False, key: str | None = None) -> str:
    """An ``<img>`` holding ``png`` as a data URL; ``pixels``: drawn without smoothing
    (image grids); ``key``: its ``data-picture`` name (what tests and readers look for)."""
    data = base64.b64encode(png).decode("ascii")
    cls = ' class="pixels"' if pixels else ""
    name = f' data-picture="{esc(key)}"' if key else ""
    return f'<img alt="{esc(alt)}"{cls}{name} src="data:image/png;base64,{data}">'


def cell_table(rows: Iterable[Sequence[str]], header: Sequence[str] | None = None, *,
               numeric: Sequence[bool] | None = None, best: Iterable[tuple[int, int]] = (),
               raw: bool = False, cls: str = "") -> str:
    """A table of text cells (escaped unless ``raw``: cells already HTML).

    ``numeric[j]``: column j right-aligned; ``best``: (row, column) cells marked best.
    """
    marked = set(best)
    head = ""
    if header is not None:
        head = "<thead><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr></thead>"
    body = []
    for i, row in enumerate(rows):
        cells = []
        for j, cell in enumerate(row):
            classes = [c for c, on in (("num", numeric is not None and j < len(numeric)
                                        and numeric[j]), ("best", (i, j) in marked)) if on]
            attr = f' class="{" ".join(classes)}"' if classes else ""
            tag = "th" if header is None and j == 0 else "td"
            cells.append(f"<{tag}{attr}>{cell if raw else esc(cell)}</{tag}>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    table_cls = f' class="{cls}"' if cls else ""
    return (f'<div class="scroll"><table{table_cls}>{head}<tbody>' + "".join(body)
            + "</tbody></table></div>")


def value_html(value: Any) -> str:
    """A configuration value as readable HTML: a list of records (table columns, say) as a
    table with one row per record, a dict as a key/value table, a list of plain values
    as a comma list, anything else as text."""
    if isinstance(value, dict):
        if not value:
            return "<i>none</i>"
        pairs = [(esc(k), value_html(v)) for k, v in value.items()]
        return cell_table(pairs, raw=True, cls="inner")
    if isinstance(value, (list, tuple)):
        if value and all(isinstance(v, dict) for v in value):
            keys: list[str] = []
            for v in value:
                keys += [k for k in v if k not in keys]
            rows = [[_plain(v.get(k)) for k in keys] for v in value]
            return cell_table(rows, header=keys, cls="inner")
        if any(isinstance(v, (dict, list, tuple)) for v in value):
            return f"<code>{esc(json.dumps(value))}</code>"
        return esc(", ".join(_plain(v) for v in value)) if value else "<i>none</i>"
    return esc(_plain(value))


def _plain(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list, tuple)):
        return json.dumps(value)
    return str(value)


def details(summary: str, body: str, *, open_: bool = False, key: str | None = None) -> str:
    """A folded block (``<details>``) whose ``summary`` line opens it."""
    ident = f' id="{esc(key)}"' if key else ""
    return (f"<details{ident}{' open' if open_ else ''}><summary>{esc(summary)}</summary>"
            f"{body}</details>")


def section(key: str, title: str, body: str) -> str:
    """A titled section of the page, ``id=key`` (the table of contents links to it)."""
    return f'<section id="{esc(key)}">\n<h2>{esc(title)}</h2>\n{body}\n</section>'


def copy_block(key: str, text: str, label: str) -> str:
    """``text`` in a ``<pre>`` with a button that copies it to the clipboard."""
    return (f'<div><button type="button" class="copy" data-target="{esc(key)}">{esc(label)}'
            f'</button><span class="copied" aria-live="polite"></span>'
            f'<pre id="{esc(key)}">{esc(text)}</pre></div>')


def toc(entries: Sequence[tuple[str, str]]) -> str:
    """A line of links to the page's sections: ``(section id, name)`` pairs."""
    return ('<nav class="toc" aria-label="sections">'
            + "".join(f'<a href="#{esc(k)}">{esc(n)}</a>' for k, n in entries) + "</nav>")


def document(title: str, body: str, *, subtitle: str = "") -> str:
    """The whole page: ``body`` under a header (``title``, ``subtitle``); style and script
    inline."""
    sub = f'<span class="sub">{esc(subtitle)}</span>' if subtitle else ""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{STYLE}</style></head><body><main>\n"
        f'<header class="top"><h1>{esc(title)}</h1>{sub}</header>\n{body}\n'
        f"<script>{SCRIPT}</script>\n</main></body></html>\n"
    )
