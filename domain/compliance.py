"""Compliance findings: what a token's record and usage say about its hygiene. Pure rules."""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from domain.scopes import ADMIN_SCOPES, Scope, Scopes
from domain.views import ClientUse, ScopeUse, TokenRecord


class Severity(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"
    INFO = "info"


SEVERITY_ORDER = [Severity.HIGH, Severity.MEDIUM, Severity.LOW, Severity.INFO]


@dataclass(frozen=True, slots=True)
class Policy:
    stale_days: int = 90
    unused_scope_days: int = 90
    rotation_days: int = 90
    expiring_days: int = 7
    max_clients: int = 3
    clients_days: int = 30


@dataclass(frozen=True, slots=True)
class Finding:
    token_id: uuid.UUID
    owner: str
    token_name: str
    rule: str
    severity: Severity
    message: str
    recommendation: str


@dataclass(frozen=True, slots=True)
class OwnerSummary:
    owner: str
    active_tokens: int
    findings: dict[str, int]  # by severity


@dataclass(frozen=True, slots=True)
class ComplianceReport:
    generated_at: datetime
    policy: Policy
    findings: list[Finding]
    owners: list[OwnerSummary]
    active_tokens: int
    by_rule: dict[str, int] = field(default_factory=dict)
    by_severity: dict[str, int] = field(default_factory=dict)


def assess(
    token: TokenRecord,
    clients: Sequence[ClientUse],
    scope_uses: Sequence[ScopeUse],
    now: datetime,
    policy: Policy,
) -> list[Finding]:
    """The findings for one active token."""
    findings: list[Finding] = []

    def add(rule: str, severity: Severity, message: str, recommendation: str) -> None:
        findings.append(Finding(token.id, token.owner, token.name, rule, severity, message, recommendation))

    granted = Scopes.parse(token.scopes)
    admin = sorted(s.value for s in granted.granted & ADMIN_SCOPES)
    if admin:
        add(
            "admin_scope",
            Severity.HIGH,
            f"grants administrative scope {', '.join(admin)}",
            "keep admin scopes for short-lived tokens used by people; give pipelines narrower ones",
        )
    if token.expires_at is None:
        add(
            "no_expiry",
            Severity.MEDIUM,
            "never expires",
            "regenerate it with an expiry of 30, 60 or 90 days",
        )
    elif token.expires_at - now <= timedelta(days=policy.expiring_days):
        days = max(0, (token.expires_at - now).days)
        add(
            "expiring_soon",
            Severity.INFO,
            f"expires in {days} day{'s' if days != 1 else ''}",
            "regenerate it before it expires if it is still needed, or let it lapse",
        )
    stale_since = now - timedelta(days=policy.stale_days)
    if token.last_used_at is None:
        if token.created_at <= stale_since:
            add(
                "never_used",
                Severity.MEDIUM,
                f"never used in the {policy.stale_days} days since it was created",
                "revoke it",
            )
        else:
            add("never_used", Severity.LOW, "not used yet", "revoke it if it is not needed")
    elif token.last_used_at <= stale_since:
        add(
            "stale",
            Severity.MEDIUM,
            f"not used for {(now - token.last_used_at).days} days",
            "revoke it if it is no longer needed",
        )
    if token.last_used_at is not None and token.last_used_at > stale_since:
        narrower = _narrower_scopes(granted, scope_uses, now - timedelta(days=policy.unused_scope_days))
        if narrower is not None:
            unused, suggested = narrower
            add(
                "unused_scopes",
                Severity.MEDIUM,
                f"scope{'s' if len(unused) > 1 else ''} {', '.join(unused)} not exercised in "
                f"{policy.unused_scope_days} days",
                f"narrow it to {' '.join(suggested) if suggested else 'fewer scopes'} (least privilege)",
            )
    recent_clients = [c for c in clients if c.last_seen >= now - timedelta(days=policy.clients_days)]
    if len(recent_clients) > policy.max_clients:
        add(
            "shared",
            Severity.MEDIUM,
            f"used from {len(recent_clients)} different addresses in {policy.clients_days} days",
            "use a separate token per service or pipeline",
        )
    if now - token.issued_at >= timedelta(days=policy.rotation_days):
        add(
            "not_rotated",
            Severity.LOW,
            f"value not rotated for {(now - token.issued_at).days} days",
            "regenerate it on a schedule",
        )
    return findings


def _narrower_scopes(
    granted: Scopes, scope_uses: Sequence[ScopeUse], since: datetime
) -> tuple[list[str], list[str]] | None:
    """Scopes never exercised since `since`, and the smaller set that covers what was used."""
    exercised = {u.scope for u in scope_uses if u.last_exercised >= since}
    used: set[Scope] = set()
    for text in exercised:
        try:
            used.add(Scope(text))
        except ValueError:
            continue
    suggested: list[str] = []
    unused: list[str] = []
    for scope in granted.as_list():
        s = Scope(scope)
        if s in used:
            suggested.append(scope)
        elif s is Scope.REPO and Scope.REPO_READ in used:
            unused.append("repo (write)")
            suggested.append(Scope.REPO_READ.value)
        else:
            unused.append(scope)
    if not unused:
        return None
    return unused, sorted(set(suggested), key=[s.value for s in Scope].index)


def summarise(
    tokens: Sequence[TokenRecord], findings: Sequence[Finding], now: datetime, policy: Policy
) -> ComplianceReport:
    per_owner: dict[str, Counter[str]] = {}
    active: Counter[str] = Counter(t.owner for t in tokens)
    for finding in findings:
        per_owner.setdefault(finding.owner, Counter())[finding.severity.value] += 1
    owners = [
        OwnerSummary(
            owner, active[owner], {s.value: per_owner.get(owner, Counter())[s.value] for s in SEVERITY_ORDER}
        )
        for owner in sorted(active)
    ]
    ordered = sorted(
        findings, key=lambda f: (SEVERITY_ORDER.index(f.severity), f.owner, f.token_name, f.rule)
    )
    return ComplianceReport(
        generated_at=now,
        policy=policy,
        findings=ordered,
        owners=owners,
        active_tokens=len(tokens),
        by_rule=dict(Counter(f.rule for f in findings)),
        by_severity={s.value: sum(1 for f in findings if f.severity is s) for s in SEVERITY_ORDER},
    )
