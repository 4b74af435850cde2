"""The report's HTML skeleton and inline CSS (no external fonts, scripts or stylesheets)."""

from __future__ import annotations

CSS = """
:root { --ink:#23272e; --muted:#5f6b7a; --line:#e2e6eb; --bg:#f5f7fa; --card:#fff;
        --accent:#3b6fb6; --good:#2f855a; }
* { box-sizing: border-box; }
html { -webkit-text-size-adjust: 100%; }
body { margin:0; background:var(--bg); color:var(--ink);
       font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
header { background:linear-gradient(120deg,#20365c,#3b6fb6); color:#fff; padding:28px 0 18px; }
.wrap { max-width:1180px; margin:0 auto; padding:0 28px; }
header h1 { margin:0 0 4px; font-size:26px; font-weight:650; letter-spacing:.2px; }
header .meta { margin:0; opacity:.85; font-size:13.5px; }
nav { margin-top:14px; display:flex; flex-wrap:wrap; gap:6px; }
nav a { color:#fff; text-decoration:none; font-size:13px; padding:3px 10px; border-radius:999px;
        background:rgba(255,255,255,.14); }
nav a:hover { background:rgba(255,255,255,.28); }
main { padding:8px 0 40px; }
section { background:var(--card); border:1px solid var(--line); border-radius:10px;
          padding:18px 22px 20px; margin:18px 0; box-shadow:0 1px 2px rgba(20,30,50,.04); }
h2 { margin:0 0 12px; font-size:19px; font-weight:650; }
h3 { margin:18px 0 8px; font-size:15.5px; font-weight:650; }
p.note { color:var(--muted); font-size:13px; margin:10px 0 0; }
.tiles { display:flex; flex-wrap:wrap; gap:12px; margin:0 0 16px; }
.tile { flex:1 1 200px; border:1px solid var(--line); border-radius:8px; padding:10px 14px;
        border-top:4px solid var(--accent); }
.tile .name { font-weight:600; font-size:13.5px; color:var(--muted); overflow-wrap:anywhere; }
.tile .big { font-size:26px; font-weight:700; font-variant-numeric:tabular-nums; }
.tile .big small { font-size:13px; font-weight:500; color:var(--muted); margin-left:3px; }
.tile .sub { font-size:12.5px; color:var(--muted); }
.tablewrap { overflow-x:auto; }
table { border-collapse:collapse; width:100%; font-size:13.5px; }
th, td { padding:6px 9px; border-bottom:1px solid var(--line); text-align:right;
         white-space:nowrap; font-variant-numeric:tabular-nums; }
th { background:#f0f3f7; font-weight:600; color:#39424e; white-space:normal; vertical-align:bottom;
     line-height:1.25; }
th:first-child, td:first-child { text-align:left; }
tbody tr:nth-child(even) td { background:#fafbfc; }
tbody tr:hover td { background:#eef4fb; }
td.best { font-weight:700; color:var(--good); }
td.na { color:#a0a8b3; }
.chip { display:inline-block; width:10px; height:10px; border-radius:2px; margin-right:7px;
        vertical-align:0; }
table.kv td { text-align:left; white-space:normal; overflow-wrap:anywhere; }
table.kv td:first-child { color:var(--muted); width:32%; font-family:ui-monospace, "DejaVu Sans Mono", monospace;
        font-size:12.5px; }
.cols { display:grid; grid-template-columns:repeat(auto-fit, minmax(420px, 1fr)); gap:0 28px; }
.grid { display:grid; grid-template-columns:repeat(auto-fit, minmax(460px, 1fr)); gap:16px; }
figure { margin:0; border:1px solid var(--line); border-radius:8px; padding:10px; background:#fff; }
figure img { display:block; width:100%; height:auto; }
figcaption { color:var(--muted); font-size:12.5px; margin-top:6px; }
.example { border-top:1px solid var(--line); padding-top:6px; margin-top:10px; }
.example:first-of-type { border-top:0; margin-top:0; }
.example .why { margin:-4px 0 6px; color:var(--muted); font-size:13px; }
.example:target { outline:2px solid var(--accent); outline-offset:4px; border-radius:6px; }
table.files td:first-child { white-space:normal; overflow-wrap:anywhere; min-width:160px; }

td a { color:var(--accent); }
.players { display:flex; flex-wrap:wrap; gap:14px; margin-top:10px; }
.player { flex:1 1 280px; }
.player span { display:block; font-size:12.5px; font-weight:600; color:var(--muted); margin-bottom:3px; }
audio { width:100%; height:36px; }
details { border:1px solid var(--line); border-radius:8px; padding:8px 12px; margin:10px 0; }
summary { cursor:pointer; font-weight:600; }
footer { color:var(--muted); font-size:12.5px; text-align:center; padding:10px 0 30px; }
@media print { header { background:#20365c; } section { break-inside:avoid; } }
"""

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
<header><div class="wrap">
<h1>{title}</h1>
<p class="meta">{meta}</p>
<nav>{nav}</nav>
</div></header>
<main class="wrap">
{sections}
</main>
<footer>{footer}</footer>
</body>
</html>
"""
