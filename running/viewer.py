"""A run as one self-contained HTML page: summary, complexity against the paper, every trajectory, every reject.

People who make agent data look at conversations: which tool was called with what, what
came back, where the judge objected, why a segment was rejected. `render_run(RUN)` reads
a `gem-synth run` folder (its journal, which holds every stage's output) and returns one
HTML file: no server, no network, no script from anywhere else. `gem-synth view RUN`
writes it (and `--serve` serves it on 127.0.0.1); in a notebook, `show(RUN)` displays it.

Layout: the summary and complexity histograms (inline SVG, the paper's post-refinement
means as red lines); every accepted trajectory as a collapsible card (filter labels,
workflow graphs, tools with their parameters, judge verdicts, verified patterns, and the
chat: system prompt, user and assistant turns, each tool call with its arguments, each
tool result, long ones folded); every reject with outcome, stage, reason and violation
codes, filterable by outcome.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from pathlib import Path
from typing import Any

from gem_synth.running.tables import final_entries
from gem_synth.running.summary import PAPER, summarize
from gem_synth.signatures.chat import message_text

LONG_RESULT = 600  # characters: longer tool results and system prompts are folded

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;max-width:1100px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:32px}pre{white-space:pre-wrap}
.card{border:1px solid #ccc;border-radius:6px;margin:10px 0;padding:6px 12px}
.card>summary{cursor:pointer;font-weight:600}
.msg{margin:6px 0;padding:6px 10px;border-radius:6px}
.system{background:#f3f3f3}.user{background:#e8f0fe}.assistant{background:#e9f7ef}.tool{background:#fff7e6}
.role{font-size:11px;text-transform:uppercase;color:#666}
.call{font-family:monospace;font-size:13px}.ok{color:#1a7f37}.fail{color:#c62828}
.tag{display:inline-block;border:1px solid #bbb;border-radius:10px;padding:0 8px;margin:2px;font-size:12px}
.filters button{margin:2px}.filters button.on{background:#333;color:#fff}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:3px 8px;font-size:13px;text-align:left}
"""

_JS = """
function show(outcome){
  document.querySelectorAll('.reject').forEach(function(card){
    card.style.display = (outcome === 'all' || card.dataset.outcome === outcome) ? '' : 'none';});
  document.querySelectorAll('.filters button').forEach(function(b){
    b.classList.toggle('on', b.dataset.outcome === outcome);});
}
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _pretty(text: str) -> str:
    try:
        return json.dumps(json.loads(text), indent=2, ensure_ascii=False)
    except (json.JSONDecodeError, TypeError):
        return text


def _folded(text: str, label: str) -> str:
    if len(text) <= LONG_RESULT:
        return f"<pre>{_e(text)}</pre>"
    return f"<details><summary>{_e(label)} ({len(text):,} characters)</summary><pre>{_e(text)}</pre></details>"


def _histogram(values: list[float], title: str, paper: float | None, width: int = 300, height: int = 120) -> str:
    """An inline SVG histogram with the paper's mean as a red line."""
    if not values:
        return ""
    top = max(max(values), paper or 0) * 1.1 or 1
    bins = 10
    counts = Counter(min(int(v / top * bins), bins - 1) for v in values)
    peak = max(counts.values())
    bar_w = width / bins
    bars = "".join(f'<rect x="{b * bar_w + 1:.1f}" y="{height - 20 - counts[b] / peak * (height - 40):.1f}" '
                   f'width="{bar_w - 2:.1f}" height="{counts[b] / peak * (height - 40):.1f}" fill="#4c78a8"/>'
                   for b in counts)
    line = ""
    if paper is not None:
        x = paper / top * width
        line = (f'<line x1="{x:.1f}" x2="{x:.1f}" y1="10" y2="{height - 20}" stroke="#c62828" stroke-width="2"/>'
                f'<text x="{min(x + 3, width - 70):.1f}" y="20" font-size="11" fill="#c62828">paper {paper}</text>')
    mean = sum(values) / len(values)
    return (f'<figure style="display:inline-block;margin:6px"><svg width="{width}" height="{height}" '
            f'role="img" aria-label="{_e(title)}">{bars}{line}'
            f'<text x="0" y="{height - 4}" font-size="11">0</text>'
            f'<text x="{width - 30}" y="{height - 4}" font-size="11">{top:.0f}</text></svg>'
            f'<figcaption>{_e(title)}: mean {mean:.1f}</figcaption></figure>')


def _message(i: int, m: dict[str, Any]) -> str:
    role = m.get("role", "")
    text = message_text(m)
    parts = [f'<div class="msg {_e(role)}"><div class="role">[{i}] {_e(role)}'
             + (f" (answers {_e(m.get('tool_call_id'))})" if role == "tool" else "") + "</div>"]
    if role == "tool":
        parts.append(_folded(_pretty(text), "tool result"))
    elif role == "system":
        parts.append(_folded(text, "system prompt"))
    elif text:
        parts.append(f"<pre>{_e(text)}</pre>")
    for call in m.get("tool_calls") or []:
        fn = call.get("function") or {}
        parts.append(f'<div class="call">&rarr; <b>{_e(fn.get("name"))}</b>({_e(fn.get("arguments"))}) '
                     f'<span class="role">{_e(call.get("id"))}</span></div>')
    return "".join(parts) + "</div>"


def _verdicts(judge: dict[str, Any] | None) -> str:
    if not judge:
        return "<p>not judged</p>"
    rows = []
    for key, label in (("tool_call_hallucination", "R1 tool calls"), ("capability_hallucination", "R2 capabilities"),
                       ("context_hallucination", "R3 context")):
        v = judge.get(key) or {}
        mark = '<span class="ok">pass</span>' if v.get("passed") else '<span class="fail">fail</span>'
        rows.append(f"<tr><td>{label}</td><td>{mark}</td><td>{_e(v.get('offending_messages') or '')}</td>"
                    f"<td>{_e(v.get('reason', ''))}</td></tr>")
    return "<table><tr><th>rubric</th><th></th><th>messages</th><th>reason</th></tr>" + "".join(rows) + "</table>"


def _tools(tools: list[dict[str, Any]]) -> str:
    items = []
    for t in tools:
        fn = t.get("function") or {}
        params = (fn.get("parameters") or {}).get("properties") or {}
        items.append(f"<li><b>{_e(fn.get('name'))}</b>({_e(', '.join(params))}): {_e(fn.get('description', ''))}</li>")
    return f"<details><summary>tools ({len(tools)})</summary><ul>{''.join(items)}</ul></details>"


def _workflows(workflows: list[dict[str, Any]]) -> str:
    from gem_synth.signatures.workflow import Workflow

    lines = []
    for w in workflows:
        try:
            lines.append(f"<li><b>{_e(w['name'])}</b>: {_e(Workflow.model_validate(w).graph())}</li>")
        except Exception:  # a workflow that no longer validates is still shown by name
            lines.append(f"<li><b>{_e(w.get('name'))}</b></li>")
    return f"<ul>{''.join(lines)}</ul>" if lines else ""


def _trajectory_card(entry: dict[str, Any]) -> str:
    record = entry["result"]["record"]
    traj = record["trajectory"]
    stats = record["stats"]
    labels = record.get("labels") or {}
    verified = record.get("patterns_verified") or []
    claimed = record.get("patterns_claimed") or []
    head = (f"{_e(Path(record['segment']['source']).name)}: {stats['messages']} messages, "
            f"{stats['tool_calls']} tool calls, {stats['distinct_tools_used']} distinct tools")
    tags = "".join(f'<span class="tag">{_e(p)}</span>' for p in verified)
    unverified = [p for p in claimed if p not in verified]
    return (f'<details class="card trajectory" data-id="{_e(record["id"])}"><summary>{head}</summary>'
            f"<p>{_e(labels.get('summary', ''))} <i>({_e(labels.get('domain', ''))}; {_e(labels.get('platform', ''))}; "
            f"{_e(labels.get('task_category', ''))})</i></p>"
            f"<p>patterns verified: {tags or 'none'}"
            + (f" &middot; claimed only: {_e(', '.join(unverified))}" if unverified else "") + "</p>"
            + _workflows(record.get("workflows") or []) + _tools(traj["tools"]) + _verdicts(record.get("judge"))
            + "".join(_message(i, m) for i, m in enumerate(traj["messages"])) + "</details>")


def _reject_card(entry: dict[str, Any]) -> str:
    result = entry.get("result") or {}
    source = (result.get("segment") or entry.get("segment") or {}).get("source", "")
    codes = sorted({v["code"] for v in result.get("violations", [])})
    chat = result.get("trajectory") or result.get("draft")
    body = "".join(_message(i, m) for i, m in enumerate((chat or {}).get("messages", [])))
    return (f'<details class="card reject" data-outcome="{_e(entry["outcome"])}"><summary>'
            f"{_e(entry['outcome'])} at {_e(entry.get('stage', ''))}: {_e(Path(source).name)}</summary>"
            f'<p class="reason">{_e(entry.get("reason", ""))}</p>'
            + (f"<p>violations: {_e(', '.join(codes))}</p>" if codes else "")
            + (_verdicts(result.get("judge")) if result.get("judge") else "")
            + (f"<details><summary>the conversation that was rejected</summary>{body}</details>" if body else "")
            + "</details>")


def render_run(run_dir: str | Path) -> str:
    """The HTML report of a run folder (raises FileNotFoundError when it holds no journal)."""
    run = Path(run_dir)
    journal = run / "journal.jsonl"
    if not journal.is_file():
        raise FileNotFoundError(f"{run}: no journal.jsonl; is it a gem-synth run folder?")
    table = (run / "summary.txt").read_text() if (run / "summary.txt").is_file() else summarize(journal).table()
    entries = list(final_entries(journal))
    accepted = [e for e in entries if e["outcome"] == "accepted"]
    rejects = [e for e in entries if e["outcome"] != "accepted"]
    stats = [e["result"]["record"]["stats"] for e in accepted]
    charts = "".join(_histogram([s[k] for s in stats], k.replace("_", " "), PAPER.get(k))
                     for k in ("messages", "distinct_tools_used", "tool_calls"))
    outcomes = Counter(e["outcome"] for e in rejects)
    buttons = "".join(f'<button data-outcome="{_e(o)}" onclick="show(\'{_e(o)}\')">{_e(o)} ({n})</button>'
                      for o, n in sorted(outcomes.items()))
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>gem-synth run {_e(run.name)}</title>"
            f"<style>{_CSS}</style><script>{_JS}</script></head><body>"
            f"<h1>gem-synth run <code>{_e(run.name)}</code></h1><pre>{_e(table)}</pre>"
            f"<h2>Complexity against the paper</h2>{charts or '<p>no accepted trajectory</p>'}"
            f"<h2>Trajectories ({len(accepted)})</h2>" + "".join(_trajectory_card(e) for e in accepted)
            + f"<h2>Rejects ({len(rejects)})</h2><div class='filters'>"
            f"<button data-outcome='all' class='on' onclick=\"show('all')\">all</button>{buttons}</div>"
            + "".join(_reject_card(e) for e in rejects) + "</body></html>")


def write_report(run_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report (default RUN/report.html) and return its path."""
    path = Path(out) if out else Path(run_dir) / "report.html"
    path.write_text(render_run(run_dir), encoding="utf-8")
    return path


def show(run_dir: str | Path):
    """The report as a notebook display object (IPython's HTML)."""
    from IPython.display import HTML

    return HTML(render_run(run_dir))


def serve(path: Path, port: int = 8765) -> None:
    """Serve the report on 127.0.0.1 until Ctrl-C (for a browser on this machine)."""
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(path.parent))
    with ThreadingHTTPServer(("127.0.0.1", port), handler) as server:
        print(f"serving http://127.0.0.1:{port}/{path.name} (Ctrl-C to stop)")
        server.serve_forever()
