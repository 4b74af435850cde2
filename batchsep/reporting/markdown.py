"""Lay a report out as Markdown (GitHub flavour); figures are linked as the PNGs beside it."""

from __future__ import annotations

from collections.abc import Sequence

from batchsep.reporting.content import (
    EmotionView,
    ExampleView,
    FigureView,
    ReportContent,
    Table,
)
from batchsep.reporting.quality import DNSMOS_NOTE, REFERENCE_NOTE, TAGS_NOTE


def _cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|").replace("\n", " ")


def table_md(table: Table) -> str:
    """A pipe table; best cells in bold; numbers right-aligned."""
    lines = [
        "| " + " | ".join(_cell(h) for h in table.headers) + " |",
        "|" + "|".join([":---"] + ["---:"] * (len(table.headers) - 1)) + "|",
    ]
    for r, row in enumerate(table.rows):
        cells = [
            f"**{_cell(t)}**" if table.best and table.best[r][c] else _cell(t)
            for c, t in enumerate(row)
        ]
        cells = [
            f"[{t}](#{table.links[(r, c)]})" if (r, c) in table.links else t
            for c, t in enumerate(cells)
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def render_markdown(
    *,
    title: str,
    meta: str,
    footer: str,
    content: ReportContent,
    figures: Sequence[FigureView],
    examples: Sequence[ExampleView],
    emotion: Sequence[EmotionView] = (),
    emotion_table: Table | None = None,
    figures_note: str = "",
) -> str:
    """The whole report as Markdown text."""
    out = [f"# {title}", "", meta, "", "## Summary", "", table_md(content.summary), ""]
    out += [
        f"{content.summary_note} Best value per column (when more than one system has one) in bold.",
        "",
    ]
    if content.reference_io is not None:
        out += ["## Input → output (PESQ, STOI, SI-SDR)", "", table_md(content.reference_io), ""]
        out += [REFERENCE_NOTE + " Best output per column (when more than one system) in bold.", ""]
    if content.dnsmos is not None:
        out += ["## Reference-free quality (DNSMOS)", "", table_md(content.dnsmos), ""]
        out += [DNSMOS_NOTE + " Best output per column (when more than one system) in bold.", ""]
    if figures or figures_note:
        out += ["## Figures", ""]
        for f in figures:
            out += [f"![{f.caption}]({f.name})", "", f"*{f.caption}*", ""]
        if figures_note:
            out += [figures_note, ""]
    for heading, table in (("By input SNR", content.snr), ("By noise class", content.noise)):
        if table is not None:
            out += [f"## {heading} — mean {content.breakdown_label} (dB)", "", table_md(table), ""]
    if content.speakers is not None:
        out += [
            f"## Across speakers — {content.breakdown_label}",
            "",
            table_md(content.speakers),
            "",
        ]
    if content.files is not None:
        out += ["## Per-file results", "", table_md(content.files), "", content.files_note, ""]
    if examples:
        out += ["## Listening examples", "", "Audio players are in `index.html`.", ""]
        for ex in examples:
            if ex.anchor:
                out += [f'<a id="{ex.anchor}"></a>', ""]
            out += [f"### {ex.title}", ""]
            if ex.why:
                out += [f"*{ex.why}*", ""]
            out += [f"![spectrograms of {ex.title}]({ex.image})", ""]
            if ex.note:
                out += [ex.note, ""]
    if content.emotion_tags is not None:
        out += ["## Emotion tags", "", table_md(content.emotion_tags), "", TAGS_NOTE, ""]
    if emotion:
        out += ["## Emotion tagging", ""]
        if emotion_table is not None and len(emotion) > 1:
            out += [table_md(emotion_table), ""]
        for view in emotion:
            if view.system:
                out += [f"### {view.system}", ""]
            alt = (
                f"{view.system}: emotion confusion matrix"
                if view.system
                else "emotion confusion matrix"
            )
            out += [", ".join(f"**{k}** {v}" for k, v in view.tiles), ""]
            out += [f"![{alt}]({view.image})", "", table_md(view.table), ""]
    out += ["## Provenance", ""]
    for name, items in content.provenance:
        out += [f"### {name}", ""]
        if items:
            out += [table_md(Table(["key", "value"], [[k, v] for k, v in items])), ""]
        else:
            out += ["No job record was given for this run.", ""]
    if content.provenance_note:
        out += [content.provenance_note, ""]
    out += ["---", "", footer, ""]
    return "\n".join(out)
