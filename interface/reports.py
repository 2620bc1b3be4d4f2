"""Rendering audit entries and compliance reports: JSON, CSV, a terminal table, HTML.

Every format is built from the same rows, so they always carry the same findings.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Iterable
from dataclasses import asdict
from datetime import datetime
from typing import Any

from rich.table import Table

from domain.compliance import ComplianceReport
from domain.views import AuditEntry, Exposure, TokenAsOf

FINDING_COLUMNS = ("severity", "rule", "owner", "token_id", "token_name", "message", "recommendation")
ENTRY_COLUMNS = ("position", "at", "event", "token_id", "token_name", "owner", "actor", "details")


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


# Audit entries ---------------------------------------------------------------------------


def entry_json(e: AuditEntry) -> dict[str, Any]:
    return {
        "position": e.position,
        "at": e.at.isoformat(),
        "event": e.event_type,
        "aggregate": e.aggregate,
        "token_id": str(e.subject_id) if e.aggregate == "token" else None,
        "token_name": e.token_name,
        "owner": e.owner,
        "actor": e.actor,
        "details": e.details,
    }


def _details_text(details: dict[str, Any]) -> str:
    parts = []
    for key, value in details.items():
        if value in (None, [], "", False):
            continue
        text = " ".join(str(v) for v in value) if isinstance(value, list) else str(value)
        parts.append(f"{key}={text}")
    return ", ".join(parts)


def entries_csv(entries: Iterable[AuditEntry], *, header: bool = True) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if header:
        writer.writerow(ENTRY_COLUMNS)
    for e in entries:
        row = entry_json(e)
        writer.writerow(
            [
                row["position"],
                row["at"],
                row["event"],
                row["token_id"] or "",
                e.token_name or "",
                e.owner or "",
                e.actor or "",
                _details_text(e.details),
            ]
        )
    return buffer.getvalue()


def entries_table(entries: Iterable[AuditEntry]) -> Table:
    table = Table()
    for column in ("position", "time", "event", "token", "owner", "actor", "details"):
        table.add_column(column, overflow="fold")
    for e in entries:
        table.add_row(
            str(e.position),
            e.at.strftime("%Y-%m-%d %H:%M:%S"),
            e.event_type,
            e.token_name or "",
            e.owner or "",
            e.actor or "",
            _details_text(e.details),
        )
    return table


# Point in time and exposure --------------------------------------------------------------


def as_of_json(t: TokenAsOf) -> dict[str, Any]:
    data = asdict(t)
    data["id"] = str(t.id)
    for key, value in data.items():
        if isinstance(value, datetime):
            data[key] = value.isoformat()
    return data


def exposure_json(x: Exposure) -> dict[str, Any]:
    return {
        "id": str(x.id),
        "owner": x.owner,
        "name": x.name,
        "scopes": x.scopes,
        "active_from": x.active_from.isoformat(),
        "active_until": _iso(x.active_until),
        "exercised": x.exercised,
        "uses": [
            {
                "first_used_at": u.first_used_at.isoformat(),
                "last_used_at": u.last_used_at.isoformat(),
                "count": u.count,
                "scopes": u.scopes,
                "addresses": u.addresses,
                "user_agents": u.user_agents,
            }
            for u in x.uses
        ],
    }


# Compliance ------------------------------------------------------------------------------


def report_json(report: ComplianceReport) -> dict[str, Any]:
    return {
        "generated_at": report.generated_at.isoformat(),
        "policy": asdict(report.policy),
        "summary": {
            "active_tokens": report.active_tokens,
            "findings": len(report.findings),
            "by_severity": report.by_severity,
            "by_rule": report.by_rule,
        },
        "owners": [asdict(o) for o in report.owners],
        "findings": [finding_row(f) for f in report.findings],
    }


def finding_row(f: Any) -> dict[str, str]:
    return {
        "severity": f.severity.value,
        "rule": f.rule,
        "owner": f.owner,
        "token_id": str(f.token_id),
        "token_name": f.token_name,
        "message": f.message,
        "recommendation": f.recommendation,
    }


def report_csv(report: ComplianceReport) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=FINDING_COLUMNS)
    writer.writeheader()
    for f in report.findings:
        writer.writerow(finding_row(f))
    return buffer.getvalue()


def report_table(report: ComplianceReport) -> Table:
    table = Table(title=f"Compliance: {report.active_tokens} active tokens, {len(report.findings)} findings")
    for column in ("severity", "owner", "token", "finding", "recommendation"):
        table.add_column(column, overflow="fold")
    for f in report.findings:
        table.add_row(f.severity.value, f.owner, f.token_name, f.message, f.recommendation)
    return table


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem;color:#1f2328}
table{border-collapse:collapse;width:100%;margin:1rem 0}
th,td{border:1px solid #d0d7de;padding:.35rem .6rem;text-align:left;vertical-align:top}
th{background:#f6f8fa}.high{color:#b42318;font-weight:600}.medium{color:#b54708}
.low{color:#475467}.info{color:#175cd3}
"""


def report_html(report: ComplianceReport) -> str:
    """A self-contained page: inline style, no scripts, no external resources."""
    e = html.escape
    owners = "".join(
        f"<tr><td>{e(o.owner)}</td><td>{o.active_tokens}</td>"
        + "".join(f"<td>{o.findings.get(s, 0)}</td>" for s in ("high", "medium", "low", "info"))
        + "</tr>"
        for o in report.owners
    )
    rows = "".join(
        f'<tr><td class="{e(f.severity.value)}">{e(f.severity.value)}</td><td>{e(f.rule)}</td>'
        f"<td>{e(f.owner)}</td><td>{e(f.token_name)}<br><small>{e(str(f.token_id))}</small></td>"
        f"<td>{e(f.message)}</td><td>{e(f.recommendation)}</td></tr>"
        for f in report.findings
    )
    severities = ", ".join(f"{count} {e(name)}" for name, count in report.by_severity.items())
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>tokenledger compliance report</title><style>{_STYLE}</style></head><body>"
        f"<h1>Compliance report</h1><p>Generated {e(report.generated_at.isoformat())}: "
        f"{report.active_tokens} active tokens, {len(report.findings)} findings ({severities}).</p>"
        "<h2>By owner</h2><table><tr><th>owner</th><th>active tokens</th><th>high</th><th>medium</th>"
        f"<th>low</th><th>info</th></tr>{owners}</table>"
        "<h2>Findings</h2><table><tr><th>severity</th><th>rule</th><th>owner</th><th>token</th>"
        f"<th>finding</th><th>recommendation</th></tr>{rows}</table></body></html>"
    )
