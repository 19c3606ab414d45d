"""A problem's long thoughts as HTML, a section per method: each thought's figures and text, the raw
and polished text side by side with a word diff where the polish changed it, and the outcome
method's sampled solutions. All model text is escaped."""

from __future__ import annotations

from pipeline.report.diff import word_diff
from pipeline.report.html import esc
from pipeline.report.keywords import keyword_counts
from pipeline.report.methods import method_of, method_order

CSS = """
.sbs{display:grid;grid-template-columns:1fr 1fr;gap:1em}.sbs>div{border:1px solid #ddd;border-radius:6px;padding:.5em}
.method{border-top:2px solid #d0d7de;margin-top:1em}.solution summary{cursor:pointer}
.ok{color:#1a7f37}.bad{color:#cf222e}
"""


def _verdict(t: dict) -> str:
    if t.get("correct") is None:
        return ""
    return (
        "<span class='ok'>\u2713 verified</span>"
        if t["correct"]
        else "<span class='bad'>\u2717 not verified</span>"
    )


def thought_html(t: dict) -> str:
    """One thought: its figures, then raw and polished side by side when the polish changed the text
    (with what changed), else the text once."""
    raw = t.get("raw_text") or t["text"]
    polished = t.get("polished_text") or ""
    status = t.get("polish_status") or "not polished"
    failed = t.get("polish_failed") or []
    used = "polished" if status == "polished" else "raw"
    fail = "".join(f"<li>{esc(f)}</li>" for f in failed)
    walk = " \u2192 ".join(map(str, t.get("visits") or []))
    kw = ", ".join(f"{k}: {v}" for k, v in keyword_counts(t["text"]).items())
    reflections = t.get("n_reflections")
    head = (
        f"<h3>{esc(t['kind'])} <code>{esc(t['thought_id'])}</code> {_verdict(t)}</h3>"
        f"<p>status <b>{esc(status)}</b> (exported text: {used}); steps {t['n_steps']}, "
        f"backtracks {t['n_backtracks']}"
        + ("" if reflections is None else f", reflections {reflections}")
        + f", answer <code>{esc(t['answer'])}</code>; keywords {esc(kw)}</p>"
        + (f"<p class='muted'>walk: {esc(walk)}</p>" if walk else "")
        + (f"<ul class='failed'>{fail}</ul>" if fail else "")
    )
    if polished and polished != raw:
        body = (
            f"<div class='sbs'><div><h4>raw</h4><pre class='raw'>{esc(raw)}</pre></div>"
            f"<div><h4>polished</h4><div class='polished'><pre>{esc(polished)}</pre></div></div></div>"
            f"<details class='changes'><summary>what the polish changed</summary>"
            f"<pre>{word_diff(raw, polished)}</pre></details>"
        )
    else:
        note = "polisher output identical" if polished else "no polisher output"
        body = f"<p class='muted'>({note})</p><pre class='raw'>{esc(raw)}</pre>"
    return f'<section class="thought" data-thought-id="{esc(t["thought_id"])}">{head}{body}</section>'


def solutions_html(rows: list[dict]) -> str:
    """The outcome method's samples: how many verify, then each one folded."""
    good = sum(bool(r.get("correct")) for r in rows)
    items = "".join(
        f"<details class='solution' data-thought-id='{esc(r['thought_id'])}'><summary>"
        f"<code>{esc(r['thought_id'])}</code> answer <code>{esc(r['answer'])}</code> {_verdict(r)}"
        f"</summary><pre class='raw'>{esc(r['text'])}</pre></details>"
        for r in rows
    )
    return f"<p>{good} of {len(rows)} sampled solutions verify.</p>{items}"


def method_sections(thoughts: list[dict]) -> str:
    """A section per method that has a thought for this problem, in methods.py's order."""
    by_method: dict[str, list[dict]] = {}
    for t in thoughts:
        by_method.setdefault(method_of(t), []).append(t)
    parts = []
    for m in sorted(by_method, key=method_order):
        rows = by_method[m]
        # Journeys first, then shortcuts, as the tree walk derives them.
        long = [t for t in rows if t["kind"] == "journey"] + [t for t in rows if t["kind"] == "shortcut"]
        solutions = [t for t in rows if t["kind"] == "solution"]
        inner = "".join(thought_html(t) for t in long) + (solutions_html(solutions) if solutions else "")
        parts.append(
            f'<section class="method" id="method-{esc(m)}" data-method="{esc(m)}">'
            f"<h2>method {esc(m)}</h2>{inner}</section>"
        )
    return "".join(parts) or "<p class='muted'>no thoughts</p>"
