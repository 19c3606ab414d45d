"""One page per problem: the tree as nested <details>, the journey's walk and the shortcut on it, a
panel with a clicked node's scores and rationale, and each method's long thoughts (thought_html.py).

DOM contract (used by browser tests):
- every tree node is one element `.node` with `data-node-id="<id>"`;
- a node on the selected journey's walk has `data-walk="i,j"`: the positions at which the walk visits it;
- a node on the shortcut (root to correct leaf) has class `shortcut`;
- `.v-correct` / `.v-incorrect` / `.v-unknown` on a node give the scorer's verdict, `.pruned` a pruned
  node (dimmed, with its reason in `.prune`);
- two separate marks inside a node: `.mark.verdict[data-verdict]` (the scorer's verdict, not on the
  root) and, on a terminal node, `.mark.check[data-check]` (correct / wrong / unchecked, or none with
  "cut at max depth" / "no final answer" as its text);
- clicking a node (or Enter on it) fills `#panel` (its `data-for` is the node id) and shows the single
  `.rationale` element there, holding the node's rationale as text.
"""

from __future__ import annotations

from pipeline.report.html import clip, esc, page
from pipeline.report.marks import CSS as MARKS_CSS
from pipeline.report.marks import LEGEND, Limits, check_text, node_marks
from pipeline.report.methods import method_of
from pipeline.report.thought_html import CSS as THOUGHT_CSS
from pipeline.report.thought_html import method_sections
from trees.model import ROOT_ID, VERDICTS, Tree

CSS = """
.tree ul{list-style:none;margin:0;padding-left:1.3em;border-left:1px dotted #ccc}
.tree>ul{padding-left:0;border:0}.tree li{margin:2px 0}
.tree summary{cursor:pointer}.tree li.leaf{padding-left:1.1em}
.node{display:inline-block;border:1px solid #bbb;border-radius:4px;padding:1px 6px;cursor:pointer;max-width:90%;
 vertical-align:top;background:#fff}
.node:focus{outline:2px solid #0550ae}.node.sel{box-shadow:0 0 0 3px #f0b400}
.pruned{opacity:.45}.pruned .step{text-decoration:line-through}.prune{color:#9a6700;font-style:italic}
.node.shortcut{border-width:2px;border-color:#1a7f37;font-weight:600}
.node[data-walk]{background:#ddf4ff}
.node[data-walk]::before{content:"\\21bb " attr(data-walk) " ";color:#0550ae;font-size:.85em}
.node.cur{background:#ffd33d}
#layout{display:flex;gap:1em;align-items:flex-start}#treebox{flex:1;min-width:0;overflow:auto}
#panel{position:sticky;top:.5em;width:34%;max-height:95vh;overflow:auto;border:1px solid #ddd;border-radius:6px;
 padding:.5em .8em;background:#fafbfc}
#panel dt{font-weight:600}#panel dd{margin:0 0 .4em 0}
.rationale{white-space:pre-wrap;border-left:3px solid #f0b400;padding-left:.5em}
.problem{border:1px solid #ddd;border-radius:6px;padding:.5em;background:#fafbfc}
.legend span{margin-right:1em}
"""

SCRIPT = r"""
(function(){
  var nodes = JSON.parse(document.getElementById('node-data').textContent);
  var walks = JSON.parse(document.getElementById('walk-data').textContent);
  var panel = document.getElementById('panel');
  function el(tag, text, cls){var e=document.createElement(tag); if(text!=null) e.textContent=String(text); if(cls) e.className=cls; return e;}
  function show(id){
    var n = nodes[id]; if(!n) return;
    document.querySelectorAll('.node.sel').forEach(function(x){x.classList.remove('sel');});
    var node = document.querySelector('.node[data-node-id="'+id+'"]'); if(node) node.classList.add('sel');
    panel.dataset.for = id;
    var body = document.getElementById('panel-body'); body.textContent='';
    var dl = el('dl');
    function row(k, v){ if(v===null||v===undefined||v==='') return; dl.appendChild(el('dt',k)); dl.appendChild(el('dd',v)); }
    row('node', '#'+id+' (depth '+n.depth+')');
    row('scorer verdict', n.verdict+(n.scorer?' ('+n.scorer+')':'')); row('score', n.score);
    row('kept', n.kept ? 'yes' : 'no, pruned: '+n.prune_reason);
    if(n.is_terminal) row('answer check', n.check);
    row('tree value', n.tree_value===null ? 'none (no terminal node below)' : n.tree_value.toFixed(2)+' (share of the terminal nodes at or below that are verified correct)');
    row('reaches a correct leaf', n.reaches_correct===null ? 'unknown (no terminal node below)' : n.reaches_correct ? 'yes' : 'no');
    row('tokens', n.tokens); row('model', n.model);
    body.appendChild(dl);
    var r = document.getElementById('rationale'); r.hidden=false;
    r.textContent = n.rationale || '(no rationale)';
    (n.annotations||[]).forEach(function(a){
      body.appendChild(el('div', a.scorer+': '+a.verdict+(a.score===null?'':' ('+a.score+')'), 'muted'));
      body.appendChild(el('div', a.rationale, 'annotation'));
    });
    var st = document.getElementById('panel-step'); st.textContent = n.step; st.parentNode.hidden=false;
  }
  document.getElementById('tree').addEventListener('click', function(ev){
    var node = ev.target.closest('.node'); if(!node) return;
    ev.preventDefault(); show(node.dataset.nodeId);
  });
  document.getElementById('tree').addEventListener('keydown', function(ev){
    var node = ev.target.closest('.node'); if(node && (ev.key==='Enter'||ev.key===' ')){ev.preventDefault(); show(node.dataset.nodeId);}
  });
  var cur = -1, walk = walks.length ? walks[0] : null;
  function mark(w){
    walk = w; cur = -1;
    document.querySelectorAll('.node').forEach(function(x){x.removeAttribute('data-walk'); x.classList.remove('shortcut','cur');});
    if(!w) return;
    var pos = {};
    w.visits.forEach(function(v,i){(pos[v]=pos[v]||[]).push(i);});
    Object.keys(pos).forEach(function(id){var x=document.querySelector('.node[data-node-id="'+id+'"]'); if(x) x.setAttribute('data-walk', pos[id].join(','));});
    w.shortcut.forEach(function(id){var x=document.querySelector('.node[data-node-id="'+id+'"]'); if(x) x.classList.add('shortcut');});
    document.getElementById('walk-pos').textContent = '';
  }
  var sel = document.getElementById('journey');
  if(sel) sel.addEventListener('change', function(){ mark(walks[+sel.value]); });
  function stepTo(i){
    if(!walk || !walk.visits.length) return;
    cur = Math.max(0, Math.min(walk.visits.length-1, i));
    document.querySelectorAll('.node.cur').forEach(function(x){x.classList.remove('cur');});
    var x = document.querySelector('.node[data-node-id="'+walk.visits[cur]+'"]');
    if(x){ for(var d=x.parentElement; d; d=d.parentElement){ if(d.tagName==='DETAILS') d.open=true; }
      x.classList.add('cur'); x.scrollIntoView({block:'nearest'}); }
    document.getElementById('walk-pos').textContent = 'step '+(cur+1)+' / '+walk.visits.length+': node #'+walk.visits[cur];
  }
  var prev = document.getElementById('walk-prev'), next = document.getElementById('walk-next');
  if(prev) prev.addEventListener('click', function(){ stepTo(cur-1); });
  if(next) next.addEventListener('click', function(){ stepTo(cur+1); });
  document.getElementById('expand').addEventListener('click', function(){ document.querySelectorAll('#tree details').forEach(function(d){d.open=true;}); });
  document.getElementById('collapse').addEventListener('click', function(){ document.querySelectorAll('#tree details').forEach(function(d){d.open=false;}); });
})();
"""


def _positions(visits: list[int]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for i, v in enumerate(visits):
        out.setdefault(v, []).append(i)
    return out


def _node_html(
    tree: Tree, node_id: int, walk: dict[int, list[int]], shortcut: set[int], limits: Limits
) -> str:
    n = tree.nodes[node_id]
    verdict = n.verdict if n.verdict in VERDICTS else "unknown"
    classes = ["node", f"v-{verdict}"]
    if not n.kept:
        classes.append("pruned")
    if node_id in shortcut:
        classes.append("shortcut")
    attrs = f'class="{" ".join(classes)}" data-node-id="{node_id}" tabindex="0" role="button"'
    if node_id in walk:
        attrs += f' data-walk="{",".join(map(str, walk[node_id]))}"'
    parts = [f"<b>#{node_id}</b> <span class='step'>{esc(clip(n.step, 180))}</span>"]
    if n.score is not None:
        parts.append(f" <span class='muted'>{n.score:.2f}</span>")
    parts.append(node_marks(n, limits))
    if not n.kept:
        parts.append(f" <span class='prune'>pruned: {esc(n.prune_reason)}</span>")
    return f"<span {attrs}>{''.join(parts)}</span>"


def tree_html(tree: Tree, visits: list[int], shortcut: list[int], limits: Limits) -> str:
    """Nested lists; inner nodes are <details open> so subtrees collapse. Iterative: no recursion limit."""
    walk, on_path = _positions(visits), set(shortcut)
    out: list[str] = []
    stack: list[tuple[int, bool]] = [(ROOT_ID, False)]
    while stack:
        node_id, closing = stack.pop()
        if closing:
            out.append("</ul></details></li>")
            continue
        node = _node_html(tree, node_id, walk, on_path, limits)
        children = tree.children[node_id]
        if not children:
            out.append(f'<li class="leaf">{node}</li>')
            continue
        out.append(f"<li><details open><summary>{node}</summary><ul>")
        stack.append((node_id, True))
        stack.extend((c, False) for c in reversed(children))
    return f'<div class="tree" id="tree"><ul>{"".join(out)}</ul></div>'


def _node_data(tree: Tree, limits: Limits) -> dict[str, dict]:
    keys = ("depth", "step", "verdict", "score", "scorer", "rationale", "kept", "prune_reason")
    keys += ("is_terminal", "answer", "answer_correct", "answer_checker", "tokens", "model", "annotations")
    keys += ("tree_value", "reaches_correct")
    return {
        str(n.node_id): {**{k: getattr(n, k) for k in keys}, "check": check_text(n, limits)} for n in tree
    }


def problem_page(
    problem_id: str, problem: dict | None, tree: Tree | None, thoughts: list[dict], limits: Limits
) -> str:
    # Only the tree walk's thoughts have a walk on the tree; the other methods build no tree.
    walked = [t for t in thoughts if method_of(t) == "tree"]
    journeys = [t for t in walked if t["kind"] == "journey"]
    shortcuts = [t for t in walked if t["kind"] == "shortcut"]
    first = journeys[0] if journeys else None
    visits = first["visits"] if first else []
    shortcut = (first or (shortcuts[0] if shortcuts else None) or {}).get("shortcut") or []
    text = problem["problem"] if problem else (tree.problem if tree else "")
    reference = problem["answer"] if problem else (tree.reference if tree else "")
    walks = [
        {"thought_id": t["thought_id"], "visits": t["visits"], "shortcut": t["shortcut"]} for t in journeys
    ]
    if not walks and shortcut:
        walks = [{"thought_id": "(shortcut only)", "visits": [], "shortcut": shortcut}]
    picker = ""
    if len(journeys) > 1:
        options = "".join(
            f'<option value="{i}">{esc(t["thought_id"])}</option>' for i, t in enumerate(journeys)
        )
        picker = f'<label>journey <select id="journey">{options}</select></label> '
    controls = (
        f'<p class="controls">{picker}<button id="walk-prev" type="button">\u25c0 prev</button> '
        '<button id="walk-next" type="button">next \u25b6</button> <span id="walk-pos"></span> '
        '<button id="expand" type="button">expand all</button> '
        '<button id="collapse" type="button">collapse all</button></p>'
        f'<p class="legend muted">{LEGEND}</p>'
        '<p class="legend muted"><span>bold green border: shortcut</span>'
        "<span>blue, \u21bb i,j: visited by the journey at steps i,j</span><span>faded: pruned</span></p>"
    )
    if tree is None:
        tree_part = "<p class='muted'>no tree for this problem</p>"
        node_data: dict = {}
    else:
        tree_part = tree_html(tree, visits, shortcut, limits)
        node_data = _node_data(tree, limits)
    panel = (
        '<aside id="panel"><p class="muted">Click a node for its scores and rationale.</p>'
        '<div id="panel-body"></div><h4>rationale</h4><div id="rationale" class="rationale" hidden></div>'
        '<div hidden><h4>step</h4><pre id="panel-step"></pre></div></aside>'
    )
    body = (
        '<p><a href="../index.html">\u2190 index</a></p>'
        f"<h1>Problem <code>{esc(problem_id)}</code></h1>"
        f'<div class="problem"><pre id="problem-text">{esc(text)}</pre></div>'
        f"<p>reference answer <code>{esc(reference)}</code>"
        + (f"; {len(tree) - 1} generated nodes (root excluded)" if tree is not None else "")
        + "</p><h2>Tree</h2>"
        + controls
        + f'<div id="layout"><div id="treebox">{tree_part}</div>{panel}</div>'
        + "<h2>Long thoughts</h2>"
        + method_sections(thoughts)
    )
    return page(
        f"{problem_id} \u2013 journey report",
        body,
        css=CSS + MARKS_CSS + THOUGHT_CSS,
        script=SCRIPT,
        data={"node-data": node_data, "walk-data": walks},
    )
