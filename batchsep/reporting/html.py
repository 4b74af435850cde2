"""Lay a report out as ONE self-contained HTML page: inline CSS, images and audio as data URIs.

Nothing on the page points outside it: every ``src`` is a ``data:`` URI, every ``href`` a
``#fragment``; there are no scripts.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from html import escape

from batchsep.reporting.content import (
    EmotionView,
    ExampleView,
    FigureView,
    ReportContent,
    Table,
)
from batchsep.reporting.quality import DNSMOS_NOTE, REFERENCE_NOTE, TAGS_NOTE
from batchsep.reporting.templates import CSS, PAGE


def data_uri(data: bytes, mime: str) -> str:
    """``data:<mime>;base64,...`` for ``data``."""
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def _img(png: bytes, alt: str) -> str:
    return f'<img src="{data_uri(png, "image/png")}" alt="{escape(alt)}" loading="eager">'


def table_html(table: Table, *, colors: Mapping[str, str] | None = None, cls: str = "") -> str:
    """A <table>; cells marked best get class "best", missing ones "na"; system chips if colored."""
    head = "".join(f"<th>{escape(h)}</th>" for h in table.headers)
    chip_heads = [h for h in table.headers if colors and h in colors]
    if chip_heads and colors:
        head = "".join(
            f'<th><span class="chip" style="background:{colors[h]}"></span>{escape(h)}</th>'
            if h in colors
            else f"<th>{escape(h)}</th>"
            for h in table.headers
        )
    body = []
    for r, row in enumerate(table.rows):
        cells = []
        for c, text in enumerate(row):
            classes = []
            if table.best and table.best[r][c]:
                classes.append("best")
            if table.na and table.na[r][c]:
                classes.append("na")
            attr = f' class="{" ".join(classes)}"' if classes else ""
            content = escape(text)
            if (r, c) in table.links:
                content = f'<a href="#{escape(table.links[(r, c)])}">{content}</a>'
            if c == 0 and colors and text in colors:
                content = f'<span class="chip" style="background:{colors[text]}"></span>{content}'
            cells.append(f"<td{attr}>{content}</td>")
        body.append(f"<tr>{''.join(cells)}</tr>")
    cls_attr = f' class="{cls}"' if cls else ""
    return (
        f'<div class="tablewrap"><table{cls_attr}><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _section(anchor: str, title: str, body: str) -> str:
    return f'<section id="{anchor}"><h2>{escape(title)}</h2>\n{body}\n</section>'


def _figure(fig: FigureView, pngs: Mapping[str, bytes]) -> str:
    return (
        f"<figure>{_img(pngs[fig.name], fig.caption)}"
        f"<figcaption>{escape(fig.caption)}</figcaption></figure>"
    )


def _tiles(items: Sequence[Mapping[str, str]], colors: Mapping[str, str]) -> str:
    out = []
    for t in items:
        color = colors.get(t["name"], "#3b6fb6")
        out.append(
            f'<div class="tile" style="border-top-color:{color}">'
            f'<div class="name">{escape(t["name"])}</div>'
            f'<div class="big">{escape(t["big"])}<small>{escape(t.get("unit", ""))}</small></div>'
            f'<div class="sub">{escape(t.get("sub", ""))}</div></div>'
        )
    return f'<div class="tiles">{"".join(out)}</div>'


def _examples(examples: Sequence[ExampleView], pngs: Mapping[str, bytes]) -> str:
    out = []
    for ex in examples:
        players = "".join(
            f'<div class="player"><span>{escape(label)}</span>'
            f'<audio controls preload="metadata" src="{data_uri(wav, "audio/wav")}"></audio></div>'
            for label, wav in ex.audio
        )
        note = f'<p class="note">{escape(ex.note)}</p>' if ex.note else ""
        anchor = f' id="{escape(ex.anchor)}"' if ex.anchor else ""
        why = f'<p class="why">{escape(ex.why)}</p>' if ex.why else ""
        out.append(
            f'<div class="example"{anchor}><h3>{escape(ex.title)}</h3>{why}'
            f"<figure>{_img(pngs[ex.image], 'spectrograms of ' + ex.title)}</figure>"
            f'<div class="players">{players}</div>{note}</div>'
        )
    return "\n".join(out)


def _emotion(
    views: Sequence[EmotionView],
    table: Table | None,
    pngs: Mapping[str, bytes],
    colors: Mapping[str, str],
) -> str:
    out = []
    if table is not None and len(views) > 1:
        out.append(table_html(table, colors=colors))
    for view in views:
        heading = f"<h3>{escape(view.system)}</h3>" if view.system else ""
        tiles = _tiles([{"name": k, "big": v} for k, v in view.tiles], {})
        alt = (
            f"{view.system}: emotion confusion matrix"
            if view.system
            else "emotion confusion matrix"
        )
        out.append(
            f'{heading}{tiles}<div class="grid"><figure>{_img(pngs[view.image], alt)}'
            f"<figcaption>Rows: true emotion; colour: recall; numbers: counts.</figcaption></figure>"
            f"<div>{table_html(view.table)}</div></div>"
        )
    return "\n".join(out)


def _provenance(runs: Sequence[tuple[str, list[tuple[str, str]]]], note: str = "") -> str:
    out = []
    for name, items in runs:
        if items:
            rows = "".join(f"<tr><td>{escape(k)}</td><td>{escape(v)}</td></tr>" for k, v in items)
            body = f'<div class="tablewrap"><table class="kv"><tbody>{rows}</tbody></table></div>'
        else:
            body = '<p class="note">No job record was given for this run.</p>'
        out.append(f"<details open><summary>{escape(name)}</summary>{body}</details>")
    if note:
        out.append(f'<p class="note">{escape(note)}</p>')
    return "\n".join(out)


def render_html(
    *,
    title: str,
    meta: str,
    footer: str,
    content: ReportContent,
    colors: Mapping[str, str],
    figures: Sequence[FigureView],
    pngs: Mapping[str, bytes],
    examples: Sequence[ExampleView],
    emotion: Sequence[EmotionView] = (),
    emotion_table: Table | None = None,
    figures_note: str = "",
) -> str:
    """The whole page as a string."""
    sections = []
    nav = []

    def add(anchor: str, heading: str, body: str) -> None:
        sections.append(_section(anchor, heading, body))
        nav.append(f'<a href="#{anchor}">{escape(heading)}</a>')

    add(
        "summary",
        "Summary",
        _tiles(content.tiles, colors)
        + table_html(content.summary, colors=colors)
        + f'<p class="note">{escape(content.summary_note)} Best value per column (when more '
        "than one system has one) in green.</p>",
    )
    for anchor, heading, table, note in (
        (
            "input-output",
            "Input → output (PESQ, STOI, SI-SDR)",
            content.reference_io,
            REFERENCE_NOTE,
        ),
        ("dnsmos", "Reference-free quality (DNSMOS)", content.dnsmos, DNSMOS_NOTE),
    ):
        if table is not None:
            add(
                anchor,
                heading,
                table_html(table, colors=colors)
                + f'<p class="note">{escape(note)} Best output per '
                "column (when more than one system) in green.</p>",
            )
    if figures or figures_note:
        grid = '<div class="grid">' + "".join(_figure(f, pngs) for f in figures) + "</div>"
        note = f'<p class="note">{escape(figures_note)}</p>' if figures_note else ""
        add("figures", "Figures", (grid if figures else "") + note)
    breakdowns = []
    pivots = [
        f"<div><h3>{heading} — mean {escape(content.breakdown_label)} (dB)</h3>"
        f"{table_html(table, colors=colors)}</div>"
        for heading, table in (("By input SNR", content.snr), ("By noise class", content.noise))
        if table is not None
    ]
    if pivots:
        breakdowns.append(f'<div class="cols">{"".join(pivots)}</div>')
    if content.speakers is not None:
        breakdowns.append(
            f"<h3>Across speakers — {escape(content.breakdown_label)}</h3>"
            f"{table_html(content.speakers, colors=colors)}"
        )
    if breakdowns:
        add("breakdowns", "Breakdowns", "\n".join(breakdowns))
    if content.files is not None:
        add(
            "files",
            "Per-file results",
            table_html(content.files, cls="files")
            + f'<p class="note">{escape(content.files_note)}</p>',
        )
    if examples:
        add("examples", "Listening examples", _examples(examples, pngs))
    if content.emotion_tags is not None:
        add(
            "emotion-tags",
            "Emotion tags",
            table_html(content.emotion_tags, colors=colors)
            + f'<p class="note">{escape(TAGS_NOTE)}</p>',
        )
    if emotion:
        add("emotion", "Emotion tagging", _emotion(emotion, emotion_table, pngs, colors))
    add("provenance", "Provenance", _provenance(content.provenance, content.provenance_note))
    return PAGE.format(
        title=escape(title),
        css=CSS,
        meta=escape(meta),
        nav="".join(nav),
        sections="\n".join(sections),
        footer=escape(footer),
    )
