"""An evaluation as one self-contained HTML page (``asrforge evaluate ... --report report.html``).

The page holds the summary (WER and CER with their intervals), WER by speaker and by duration bucket, the top
substitutions, deletions and insertions, and every utterance's reference and hypothesis aligned word by word with
each error marked, in a table a click on a header sorts. It needs nothing but itself: the styles and the sorting
script are inline, nothing is fetched. Where an utterance's audio file exists, a player links it by its path
relative to the page.
"""

from __future__ import annotations

import html
import os
from pathlib import Path

from asrforge.metrics import ErrorCounts, ErrorReport, UttResult

DURATION_BUCKETS = [(0.0, 2.0), (2.0, 5.0), (5.0, 10.0), (10.0, 20.0), (20.0, float("inf"))]   # seconds

STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 2em; }
table { border-collapse: collapse; margin: .5em 0; } th, td { border: 1px solid #ccc; padding: .25em .6em; }
th { background: #f2f2f2; text-align: left; } th.sortable { cursor: pointer; } th.sortable:hover { background: #e4e4e4; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.summary td:first-child { font-weight: 600; }
.align { font-family: ui-monospace, monospace; white-space: pre-wrap; }
.sub { background: #fde2a8; } .del { background: #f8c4c4; text-decoration: line-through; } .ins { background: #c9e7c9; }
.legend span { padding: 0 .4em; margin-right: .6em; } .note { color: #666; }
"""

SORT_SCRIPT = """
document.querySelectorAll("table.sortable-table").forEach(function (table) {
  table.querySelectorAll("th.sortable").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var body = table.tBodies[0], rows = Array.prototype.slice.call(body.rows);
      var down = th.dataset.order !== "desc";
      th.dataset.order = down ? "desc" : "asc";
      rows.sort(function (a, b) {
        var x = a.cells[column].dataset.key, y = b.cells[column].dataset.key;
        var nx = parseFloat(x), ny = parseFloat(y);
        var c = (!isNaN(nx) && !isNaN(ny)) ? nx - ny : x.localeCompare(y);
        return down ? -c : c;
      });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def _ci(ci) -> str:
    return "" if not ci else f" <span class='note'>(95 % CI {100 * ci[0]:.2f}–{100 * ci[1]:.2f})</span>"


def _rate_rows(groups: list[tuple[str, list[UttResult]]]) -> str:
    rows = []
    for name, utts in groups:
        counts = ErrorCounts()
        for u in utts:
            counts.add(u.words, len(u.ref.split()))
        rows.append(f"<tr><td>{html.escape(name)}</td><td class='num'>{len(utts)}</td><td class='num'>{counts.ref_len}"
                    f"</td><td class='num'>{counts.sub}</td><td class='num'>{counts.dels}</td><td class='num'>"
                    f"{counts.ins}</td><td class='num'>{_pct(counts.rate)}</td></tr>")
    return ("<table><thead><tr><th></th><th>utterances</th><th>words</th><th>S</th><th>D</th><th>I</th><th>WER</th>"
            "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")


def _aligned(u: UttResult) -> tuple[str, str]:
    """Reference and hypothesis as HTML, each error marked by its kind."""
    ref, hyp = [], []
    for r, h in u.words.pairs:
        if r is not None and h is not None and r == h:
            ref.append(html.escape(r))
            hyp.append(html.escape(h))
        elif r is None:
            hyp.append(f"<span class='ins' title='inserted'>{html.escape(h)}</span>")
            ref.append(f"<span class='ins'>{'*' * len(h)}</span>")
        elif h is None:
            ref.append(f"<span class='del' title='deleted'>{html.escape(r)}</span>")
            hyp.append(f"<span class='del'>{'*' * len(r)}</span>")
        else:
            ref.append(f"<span class='sub' title='substituted'>{html.escape(r)}</span>")
            hyp.append(f"<span class='sub' title='substituted'>{html.escape(h)}</span>")
    return " ".join(ref), " ".join(hyp)


def _audio_cell(audio: str | None, page: Path) -> str:
    if not audio or not Path(audio).is_file():
        return "<td data-key=''></td>"
    link = os.path.relpath(Path(audio).resolve(), page.resolve().parent)
    return (f"<td data-key=''><audio controls preload='none' src='{html.escape(Path(link).as_posix(), quote=True)}'>"
            "</audio></td>")


def write_html_report(path: str | Path, report: ErrorReport, summary: dict, audio: dict[str, tuple[str, float]],
                      title: str, skipped: list[tuple[str, str]] = ()) -> Path:
    """Write the page. ``summary``: what ``evaluate --json`` holds (wer, cer, their ``*_ci``, search, normalizer...);
    ``audio``: utterance id -> (audio path, duration in seconds) from the manifest; ``skipped``: (id, why) of the
    items that could not be scored."""
    path = Path(path)
    utts = report.utts
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>"]
    if not utts:
        parts.append("<p id='empty'>No utterance could be scored, so there is no WER to report.</p>")
    else:
        s = summary
        rows = [("WER", _pct(s["wer"]) + _ci(s.get("wer_ci"))), ("CER", _pct(s["cer"]) + _ci(s.get("cer_ci"))),
                ("utterances", str(s["utts"])), ("reference words", str(s["words"])),
                ("substitutions / deletions / insertions", f"{s['sub']} / {s['del']} / {s['ins']}"),
                ("utterances with an error", str(s["sentence_errors"]))]
        rows += [(k, html.escape(str(s[k]))) for k in ("search", "normalizer") if k in s]
        if "rtf" in s:
            rows.append(("real-time factor", f"{s['rtf']:.4f}"))
        parts.append("<table class='summary' id='summary'><tbody>" +
                     "".join(f"<tr><td>{k}</td><td>{v}</td></tr>" for k, v in rows) + "</tbody></table>")
        speakers = sorted({u.speaker for u in utts if u.speaker is not None})
        if speakers:
            parts.append("<h2>WER by speaker</h2><div id='by-speaker'>" +
                         _rate_rows([(sp, [u for u in utts if u.speaker == sp]) for sp in speakers]) + "</div>")
        buckets = []
        for low, high in DURATION_BUCKETS:
            inside = [u for u in utts if u.id in audio and low <= audio[u.id][1] < high]
            if inside:
                label = f"{low:g}–{high:g} s" if high != float("inf") else f"{low:g} s and longer"
                buckets.append((label, inside))
        if buckets:
            parts.append("<h2>WER by duration</h2><div id='by-duration'>" + _rate_rows(buckets) + "</div>")
        parts.append("<h2>Most frequent errors</h2><div id='confusions'>")
        for kind, pairs in report.confusions(15).items():
            items = "".join(f"<tr><td>{html.escape(k)}</td><td class='num'>{n}</td></tr>" for k, n in pairs)
            parts.append(f"<h3>{kind}</h3>" + (f"<table><tbody>{items}</tbody></table>" if pairs else "<p>none</p>"))
        parts.append("</div>")
        parts.append("<h2>Utterances</h2><p class='legend'><span class='sub'>substituted</span><span class='del'>deleted"
                     "</span><span class='ins'>inserted</span> — click a header to sort</p>"
                     "<table class='sortable-table' id='utterances'><thead><tr><th class='sortable'>id</th>"
                     "<th class='sortable'>speaker</th><th class='sortable'>errors</th><th class='sortable'>words</th>"
                     "<th>reference / hypothesis</th><th>audio</th></tr></thead><tbody>")
        for u in utts:
            errors = u.words.sub + u.words.dels + u.words.ins
            ref, hyp = _aligned(u)
            parts.append(
                f"<tr><td data-key='{html.escape(u.id, quote=True)}'>{html.escape(u.id)}</td>"
                f"<td data-key='{html.escape(u.speaker or '', quote=True)}'>{html.escape(u.speaker or '')}</td>"
                f"<td class='num errors' data-key='{errors}'>{errors}</td>"
                f"<td class='num' data-key='{len(u.ref.split())}'>{len(u.ref.split())}</td>"
                f"<td class='align'>REF: {ref}<br>HYP: {hyp}</td>{_audio_cell(audio.get(u.id, (None, 0))[0], path)}</tr>")
        parts.append("</tbody></table>")
    if skipped:
        parts.append(f"<h2>Skipped ({len(skipped)})</h2><ul id='skipped'>" +
                     "".join(f"<li>{html.escape(i)}: {html.escape(why)}</li>" for i, why in skipped) + "</ul>")
    parts.append(f"<script>{SORT_SCRIPT}</script></body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(parts), encoding="utf-8")
    return path
