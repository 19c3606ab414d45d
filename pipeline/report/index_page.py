"""The index page: run summary, and a filterable, sortable, paged table of problems driven by a compact
JSON index (one short row per problem; everything else lives in the per-problem pages)."""

from __future__ import annotations

from pipeline.report.diagnostics import CSS as DIAGNOSTICS_CSS
from pipeline.report.html import clip, esc, page
from pipeline.report.keywords import KEYWORDS, keyword_counts
from pipeline.report.methods import accepted

SNIPPET_CHARS = 100
ANSWER_CHARS = 40
COLUMNS = ["id", "file", "problem", "answer", "nodes", "pruned", "correct", "incorrect", "journeys"]
COLUMNS += ["backtracks", "kw"]

CSS = """
#filters{display:flex;flex-wrap:wrap;gap:.8em;align-items:center;margin:.5em 0;padding:.5em;background:#f6f8fa;
 border-radius:6px}
#filters input[type=number]{width:5em}#problems th{cursor:pointer;user-select:none}
#problems td.problem{max-width:40em}#problems td.answer{font-family:ui-monospace,monospace}
"""

SCRIPT = r"""
(function(){
  var D = JSON.parse(document.getElementById('index-data').textContent);
  var C = D.columns, KW = D.keywords, PAGE = 100;
  var rows = D.rows.map(function(r){ var o={}; C.forEach(function(c,i){o[c]=r[i];}); o._lc=(o.id+' '+o.problem).toLowerCase(); return o; });
  var st = {q:'', journey:'all', kw:'', min:null, max:null, sort:null, dir:1, page:0};
  var $ = function(id){return document.getElementById(id);};
  function num(v){ return v===''||v===null ? null : +v; }
  function filtered(){
    var out = rows.filter(function(r){
      if(st.q && r._lc.indexOf(st.q)<0) return false;
      if(st.journey==='yes' && !r.journeys) return false;
      if(st.journey==='no' && r.journeys) return false;
      if(st.kw && !(r.kw[KW.indexOf(st.kw)]>0)) return false;
      if(st.min!==null && r.nodes<st.min) return false;
      if(st.max!==null && r.nodes>st.max) return false;
      return true;
    });
    if(st.sort){ var k=st.sort; out.sort(function(a,b){ var x=a[k], y=b[k]; if(k==='kw'){x=x.reduce(function(s,v){return s+v;},0); y=y.reduce(function(s,v){return s+v;},0);} return (x<y?-1:x>y?1:0)*st.dir; }); }
    return out;
  }
  function td(text, cls){ var e=document.createElement('td'); e.textContent=String(text); if(cls) e.className=cls; return e; }
  function render(){
    var rs = filtered(), pages = Math.max(1, Math.ceil(rs.length/PAGE));
    st.page = Math.min(st.page, pages-1);
    var body = $('rows'); body.textContent='';
    rs.slice(st.page*PAGE, (st.page+1)*PAGE).forEach(function(r){
      var tr=document.createElement('tr'); tr.dataset.problemId=r.id;
      var a=document.createElement('a'); a.href='problems/'+encodeURIComponent(r.file); a.textContent=r.id;
      var t=document.createElement('td'); t.appendChild(a); tr.appendChild(t);
      tr.appendChild(td(r.problem,'problem')); tr.appendChild(td(r.answer,'answer'));
      ['nodes','pruned','correct','incorrect','journeys','backtracks'].forEach(function(k){tr.appendChild(td(r[k],'num'));});
      tr.appendChild(td(KW.map(function(k,i){return r.kw[i]?k+' '+r.kw[i]:'';}).filter(Boolean).join(', ')));
      body.appendChild(tr);
    });
    $('count').textContent = rs.length+' of '+rows.length+' problems';
    $('pageno').textContent = 'page '+(st.page+1)+' / '+pages;
    $('prev').disabled = st.page<=0; $('next').disabled = st.page>=pages-1;
  }
  $('q').addEventListener('input', function(e){ st.q=e.target.value.trim().toLowerCase(); st.page=0; render(); });
  $('journey').addEventListener('change', function(e){ st.journey=e.target.value; st.page=0; render(); });
  $('kw').addEventListener('change', function(e){ st.kw=e.target.value; st.page=0; render(); });
  $('min').addEventListener('input', function(e){ st.min=num(e.target.value); st.page=0; render(); });
  $('max').addEventListener('input', function(e){ st.max=num(e.target.value); st.page=0; render(); });
  $('prev').addEventListener('click', function(){ st.page--; render(); });
  $('next').addEventListener('click', function(){ st.page++; render(); });
  document.querySelectorAll('#problems th[data-k]').forEach(function(th){
    th.addEventListener('click', function(){ var k=th.dataset.k; st.dir = st.sort===k ? -st.dir : 1; st.sort=k; render(); });
  });
  render();
})();
"""


def index_row(
    problem_id: str, file_name: str, problem: str, reference: str, tree_stats: dict, thoughts: list[dict]
) -> list:
    """One compact row per problem, in COLUMNS order; tree_stats["nodes"] counts generated nodes."""
    journeys = [t for t in thoughts if t["kind"] == "journey" and accepted(t)]
    kw = [0] * len(KEYWORDS)
    for t in journeys:
        for i, v in enumerate(keyword_counts(t["text"]).values()):
            kw[i] += v
    return [
        problem_id,
        file_name,
        clip(problem, SNIPPET_CHARS),
        clip(reference, ANSWER_CHARS),
        tree_stats.get("nodes", 0),
        tree_stats.get("pruned", 0),
        tree_stats.get("correct", 0),
        tree_stats.get("incorrect", 0),
        len(journeys),
        sum(t["n_backtracks"] for t in journeys),
        kw,
    ]


def index_page(title: str, top: str, rows: list[list]) -> str:
    """The page: `top` (yield, summary, diagnostics, as HTML) above the problem table built from rows."""
    kw_options = "".join(f'<option value="{esc(k)}">{esc(k)}</option>' for k in KEYWORDS)
    headers = [
        ("id", "problem id"),
        ("problem", "problem"),
        ("answer", "reference answer"),
        ("nodes", "generated nodes (root excluded)"),
        ("pruned", "pruned"),
        ("correct", "correct leaves"),
        ("incorrect", "incorrect leaves"),
        ("journeys", "journeys"),
        ("backtracks", "backtracks"),
        ("kw", "keywords"),
    ]
    head = "".join(f'<th data-k="{k}">{esc(label)}</th>' for k, label in headers)
    body = (
        f"<h1>{esc(title)}</h1>{top}<h2>Problems</h2>"
        '<div id="filters"><input id="q" type="search" placeholder="search id or problem text">'
        '<label>journey <select id="journey"><option value="all">all</option>'
        '<option value="yes">with a journey</option><option value="no">without a journey</option></select></label>'
        f'<label>keyword <select id="kw"><option value="">any</option>{kw_options}</select></label>'
        '<label>generated nodes \u2265 <input id="min" type="number" min="0"></label>'
        '<label>\u2264 <input id="max" type="number" min="0"></label>'
        '<button id="prev" type="button">\u25c0</button><span id="pageno"></span>'
        '<button id="next" type="button">\u25b6</button><span id="count" class="muted"></span></div>'
        f'<table id="problems"><thead><tr>{head}</tr></thead><tbody id="rows"></tbody></table>'
        "<noscript><p>The problem table needs JavaScript; the pages are in problems/.</p></noscript>"
    )
    data = {"columns": COLUMNS, "keywords": list(KEYWORDS), "rows": rows}
    return page(title, body, css=CSS + DIAGNOSTICS_CSS, script=SCRIPT, data={"index-data": data})
