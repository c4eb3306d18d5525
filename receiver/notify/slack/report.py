"""A cost report as a Slack message: pure functions from a `Report` to Block Kit.

The words are the terminal's (`receiver.reports.render.section_lines`), escaped and cut
to Block Kit's limits; a webhook message adds a link to Prometheus' graph, since incoming
webhooks cannot carry the chart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slack_sdk.models.blocks import Block, ContextBlock, DividerBlock, HeaderBlock, SectionBlock

from receiver.notify.slack.render import MAX_FALLBACK_TEXT, MAX_HEADER_TEXT, MAX_SECTION_TEXT
from receiver.notify.slack.text import fit, mrkdwn, mrkdwn_link, plain
from receiver.reports.model import Report
from receiver.reports.render import TITLES, late_note, section_lines, title

# Our own budget inside Slack's: 5 sections x (title + divider + body) + header + 2 context
# blocks = 18 blocks <= 50 (Slack: 50 blocks per message).
_SECTION_TITLE = 100
_LINE = 400  # a row: a service name and a few figures
CHART_FILENAME = "cost-report.png"
CHART_TITLE = 200  # our own cut; Slack shows a file's title on one line


@dataclass(frozen=True, slots=True)
class ReportMessage:
    """A rendered report: the fallback text and the top-level blocks (JSON-ready)."""

    text: str
    blocks: list[dict[str, Any]]

    def body(self) -> dict[str, Any]:
        return {
            "text": self.text,
            "blocks": self.blocks,
            # The graph link would otherwise unfurl into a large preview.
            "unfurl_links": False,
            "unfurl_media": False,
        }


def report_message(report: Report, *, graph_link: bool = False) -> ReportMessage:
    """The report as one message; `graph_link` adds Prometheus' graph (for webhooks)."""
    heading = title(report)
    blocks: list[Block] = [HeaderBlock(text=plain(fit(heading, MAX_HEADER_TEXT)))]
    note = late_note(report)
    if note:
        blocks.append(ContextBlock(elements=[mrkdwn(f":warning: {fit(note, 500)}")]))
    for section in report.sections:
        blocks.append(DividerBlock())
        head = f"*{fit(TITLES[section], _SECTION_TITLE)}*"
        blocks.append(SectionBlock(text=mrkdwn(_lines(head, section_lines(report, section)))))
    if graph_link and report.graph_url:
        link = mrkdwn_link(report.graph_url, "Graph in Prometheus")
        blocks.append(ContextBlock(elements=[mrkdwn(link)]))
    return ReportMessage(
        text=fit(heading, MAX_FALLBACK_TEXT),
        blocks=[block.to_dict() for block in blocks],
    )


def chart_title(report: Report) -> str:
    """The uploaded chart's title (plain text: Slack does not read mrkdwn there)."""
    text = f"$/h by service, {title(report)}"
    return text if len(text) <= CHART_TITLE else text[: CHART_TITLE - 1] + "…"


def _lines(head: str, lines: list[str]) -> str:
    """`head` and one escaped line each, within Slack's 3000 characters a section."""
    text = head
    for index, line in enumerate(lines):
        row = "\n" + fit(line, _LINE)
        more = f"\n… and {len(lines) - index} more"
        if len(text) + len(row) + len(more) > MAX_SECTION_TEXT:
            return text + more
        text += row
    return text
