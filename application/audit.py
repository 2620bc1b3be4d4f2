"""Audit and compliance: the event log, point-in-time reconstruction, exposure windows,
compliance reports, and the hash chain that makes the log tamper-evident."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any

from application.audit_ports import AuditQueries
from application.ledger import Actor, Ledger
from domain.account import normalise_username
from domain.compliance import ComplianceReport, Policy, assess, summarise
from domain.errors import PermissionDenied, ValidationError
from domain.integrity import GENESIS, link
from domain.scopes import Scopes, parse_scope
from domain.token import TokenState
from domain.views import AuditEntry, AuditFilter, Exposure, ExposureUse, TokenAsOf

EVENT_TYPES = ("Created", "Used", "Regenerated", "Revoked", "Registered", "PasswordChanged", "RoleChanged")
MAX_PAGE = 1000
EXPORT_FORMAT = "tokenledger-audit-export"
Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[AuditEntry]
    next_cursor: int | None


@dataclass(frozen=True, slots=True)
class ChainCheck:
    ok: bool
    checked: int  # events whose digest was recomputed
    head_position: int
    head_digest: str
    first_bad_position: int | None = None
    problem: str | None = None
    unchained: int = 0  # events newer than the chain projection (not yet covered)


class Audit:
    def __init__(self, ledger: Ledger, queries: AuditQueries) -> None:
        self.ledger = ledger
        self.queries = queries

    # Access --------------------------------------------------------------------------------

    @staticmethod
    def require_auditor(actor: Actor) -> None:
        if not actor.is_admin:
            raise PermissionDenied(
                "the organisation's audit needs an admin account or a token with admin:org"
            )

    # The log -------------------------------------------------------------------------------

    def log(
        self,
        actor: Actor,
        *,
        owner: str | None = None,
        token_id: uuid.UUID | None = None,
        event_types: tuple[str, ...] = (),
        since: datetime | None = None,
        until: datetime | None = None,
        newest_first: bool = False,
        cursor: int | None = None,
        limit: int = 100,
    ) -> AuditPage:
        """One page of the log. The cursor is the position of the last entry of the previous
        page, so pages are stable while events are appended and unaffected by position gaps."""
        if owner is not None:
            owner = normalise_username(owner)
        if not actor.is_admin:
            if owner not in (None, actor.username):
                raise PermissionDenied("members see their own tokens' history only")
            owner = actor.username
        unknown = [t for t in event_types if t not in EVENT_TYPES]
        if unknown:
            raise ValidationError(
                "type", f"unknown event type {unknown[0]!r}; known: {', '.join(EVENT_TYPES)}"
            )
        if not 1 <= limit <= MAX_PAGE:
            raise ValidationError("limit", f"limit must be between 1 and {MAX_PAGE}")
        _check_range(since, until)
        where = AuditFilter(owner=owner, token_id=token_id, event_types=event_types, since=since, until=until)
        entries = list(self.queries.events(where, after=cursor, limit=limit + 1, descending=newest_first))
        more = len(entries) > limit
        entries = entries[:limit]
        return AuditPage(entries, entries[-1].position if more else None)

    def iterate(self, actor: Actor, *, cursor: int | None = None, **filters: Any) -> Iterator[AuditEntry]:
        """Every matching entry after `cursor` (a position, as in `log`), page by page."""
        while True:
            page = self.log(actor, cursor=cursor, limit=MAX_PAGE, **filters)
            yield from page.entries
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    # Point in time -------------------------------------------------------------------------

    def as_of(self, actor: Actor, instant: datetime) -> list[TokenAsOf]:
        """Every token as it stood at `instant`, rebuilt from the token events up to then."""
        self.require_auditor(actor)
        instant = _aware(instant, "as_of")
        state: dict[uuid.UUID, dict[str, Any]] = {}
        for e in self.queries.token_events(("Created", "Regenerated", "Revoked"), until=instant):
            if e.event_type == "Created":
                state[e.subject_id] = {
                    "id": e.subject_id,
                    "owner": e.owner or "",
                    "name": e.token_name or "",
                    "scopes": list(e.details["scopes"]),
                    "created_at": e.at,
                    "expires_at": _parse(e.details.get("expires_at")),
                    "regenerated_at": None,
                    "revoked_at": None,
                    "revoke_reason": None,
                }
            elif e.subject_id in state and e.event_type == "Regenerated":
                state[e.subject_id].update(
                    regenerated_at=e.at, expires_at=_parse(e.details.get("expires_at"))
                )
            elif e.subject_id in state and e.event_type == "Revoked":
                state[e.subject_id].update(revoked_at=e.at, revoke_reason=e.details.get("reason"))
        usage = self.queries.usage_until(instant)
        tokens = []
        for token_id, values in state.items():
            last_used, uses = usage.get(token_id, (None, 0))
            if values["revoked_at"] is not None:
                status = TokenState.REVOKED
            elif values["expires_at"] is not None and values["expires_at"] <= instant:
                status = TokenState.EXPIRED
            else:
                status = TokenState.ACTIVE
            tokens.append(
                TokenAsOf(**values, state=status.value, last_used_at=last_used, use_count=int(uses or 0))
            )
        return sorted(tokens, key=lambda t: (t.owner, t.created_at))

    # Exposure ------------------------------------------------------------------------------

    def exposure(self, actor: Actor, scope: str, since: datetime, until: datetime) -> list[Exposure]:
        """Every token that could exercise `scope` at some moment in [since, until], with its uses
        in that window. A token is usable from creation (or regeneration) until its expiry, its
        next regeneration (which retires the old value) or its revocation."""
        self.require_auditor(actor)
        wanted = parse_scope(scope)
        since, until = _aware(since, "since"), _aware(until, "until")
        _check_range(since, until)
        timelines: dict[uuid.UUID, dict[str, Any]] = {}
        # The whole history, not only up to `until`: a regeneration or revocation after the
        # window still ends the span of the value that was live in it.
        for e in self.queries.token_events(("Created", "Regenerated", "Revoked"), until=None):
            if e.event_type == "Created":
                if e.at > until:
                    continue
                if not Scopes.parse(e.details["scopes"]).allows(wanted):
                    continue
                timelines[e.subject_id] = {
                    "entry": e,
                    "issues": [(e.at, _parse(e.details.get("expires_at")))],
                    "revoked_at": None,
                }
            elif e.subject_id in timelines and e.event_type == "Regenerated":
                timelines[e.subject_id]["issues"].append((e.at, _parse(e.details.get("expires_at"))))
            elif e.subject_id in timelines and e.event_type == "Revoked":
                timelines[e.subject_id]["revoked_at"] = e.at
        exposed: dict[uuid.UUID, tuple[AuditEntry, datetime, datetime | None]] = {}
        for token_id, timeline in timelines.items():
            window = _overlap(timeline["issues"], timeline["revoked_at"], since, until)
            if window is not None:
                exposed[token_id] = (timeline["entry"], *window)
        uses: dict[uuid.UUID, list[ExposureUse]] = {token_id: [] for token_id in exposed}
        for e in self.queries.uses_between(list(exposed), since, until):
            uses[e.subject_id].append(
                ExposureUse(
                    first_used_at=_parse(e.details["first_used_at"]),  # type: ignore[arg-type]
                    last_used_at=_parse(e.details["last_used_at"]),  # type: ignore[arg-type]
                    count=e.details["count"],
                    scopes=e.details["scopes"],
                    addresses=e.details["addresses"],
                    user_agents=e.details["user_agents"],
                )
            )
        result = [
            Exposure(
                id=token_id,
                owner=entry.owner or "",
                name=entry.token_name or "",
                scopes=list(entry.details["scopes"]),
                active_from=start,
                active_until=end,
                uses=uses[token_id],
            )
            for token_id, (entry, start, end) in exposed.items()
        ]
        return sorted(result, key=lambda x: (not x.exercised, x.owner, x.name))

    # Compliance ----------------------------------------------------------------------------

    def compliance(self, actor: Actor, policy: Policy | None = None) -> ComplianceReport:
        self.require_auditor(actor)
        policy = policy or Policy()
        now = self.ledger.clock.now()
        active = [t for t in self.queries.tokens() if t.state(now) is TokenState.ACTIVE]
        clients = self.queries.clients()
        scope_uses = self.queries.scope_uses()
        findings = [
            f for t in active for f in assess(t, clients.get(t.id, []), scope_uses.get(t.id, []), now, policy)
        ]
        return summarise(active, findings, now, policy)

    # Tamper evidence -----------------------------------------------------------------------

    def digest(self) -> tuple[int, str]:
        """The head of the chain: record it outside the system to prove later that nothing
        before it changed."""
        head = self.queries.chain_head()
        return head if head is not None else (0, GENESIS)

    def verify(
        self, *, expect: tuple[int, str] | None = None, progress: Progress | None = None, batch: int = 2000
    ) -> ChainCheck:
        """Recompute the chain from the stored events and compare it, position by position,
        with the chain recorded as they were appended. `expect` is a (position, digest) pair
        recorded outside the system earlier (`tokenledger audit digest`)."""
        head = self.queries.chain_head() or (0, GENESIS)
        chain = self._chain_rows(batch)
        recorded = next(chain, None)
        previous, checked, expected_found = GENESIS, 0, expect is None

        def fail(position: int, problem: str) -> ChainCheck:
            return ChainCheck(False, checked, head[0], head[1], position, problem)

        for n in self._notifications(batch):
            if recorded is not None and recorded[0] < n.id:
                return fail(recorded[0], "an event recorded in the chain is missing from the log")
            if n.id > head[0]:
                break  # appended after the chain projection last ran: not covered yet
            if recorded is None or recorded[0] != n.id:
                return fail(n.id, "an event in the log is not in the chain (inserted)")
            digest = link(previous, n.id, n.originator_id, n.originator_version, n.topic, n.state)
            if digest != recorded[1]:
                return fail(n.id, "the stored event does not match its digest (changed or reordered)")
            if expect is not None and n.id == expect[0]:
                if digest != expect[1]:
                    return fail(n.id, "the digest differs from the one recorded outside the system")
                expected_found = True
            previous, checked = digest, checked + 1
            recorded = next(chain, None)
            if progress and checked % batch == 0:
                progress(checked, n.id)
        if recorded is not None:
            return fail(recorded[0], "an event recorded in the chain is missing from the log")
        if expect is not None and not expected_found:
            return fail(expect[0], "the recorded position is not in the chain")
        unchained = max(0, (self.ledger.recorder.max_notification_id() or 0) - head[0])
        if progress:
            progress(checked, head[0])
        return ChainCheck(True, checked, head[0], head[1], unchained=unchained)

    def _notifications(self, batch: int) -> Iterator[Any]:
        last = 0
        while True:
            page = self.ledger.recorder.select_notifications(
                start=last, limit=batch, inclusive_of_start=False
            )
            yield from page
            if len(page) < batch:
                return
            last = page[-1].id

    def _chain_rows(self, batch: int) -> Iterator[tuple[int, str]]:
        after = 0
        while True:
            page = self.queries.chain(after=after, limit=batch)
            yield from page
            if len(page) < batch:
                return
            after = page[-1][0]

    # Export --------------------------------------------------------------------------------

    def export(
        self, out: IO[str], *, progress: Progress | None = None, batch: int = 2000
    ) -> tuple[int, str, int]:
        """The whole log as JSON lines: a header, one line per stored event with its digest,
        and a trailer with the head. Returns (head position, head digest, events)."""
        now = self.ledger.clock.now()
        out.write(json.dumps({"format": EXPORT_FORMAT, "version": 1, "exported_at": now.isoformat()}) + "\n")
        previous, last, count = GENESIS, 0, 0
        for n in self._notifications(batch):
            previous = link(previous, n.id, n.originator_id, n.originator_version, n.topic, n.state)
            entry = {
                "position": n.id,
                "originator_id": str(n.originator_id),
                "originator_version": n.originator_version,
                "topic": n.topic,
                "state": base64.b64encode(n.state).decode(),
                "digest": previous,
            }
            out.write(json.dumps(entry) + "\n")
            last, count = n.id, count + 1
            if progress and count % batch == 0:
                progress(count, last)
        if progress:
            progress(count, last)
        out.write(json.dumps({"head": {"position": last, "digest": previous}, "events": count}) + "\n")
        return last, previous, count

    def verify_export(self, lines: IO[str]) -> ChainCheck:
        """Check an export on its own: every digest recomputed, the trailer's head matched.
        Then, where the live chain reaches the export's head, compare with it too."""
        previous, checked, last = GENESIS, 0, 0
        header = _json_line(lines.readline())
        if header.get("format") != EXPORT_FORMAT:
            raise ValidationError("export", "not a tokenledger audit export")
        trailer: dict[str, Any] | None = None
        for raw in lines:
            line = _json_line(raw)
            if "head" in line:
                trailer = line
                break
            try:
                position = int(line["position"])
                recomputed = link(
                    previous,
                    position,
                    line["originator_id"],
                    int(line["originator_version"]),
                    line["topic"],
                    base64.b64decode(line["state"]),
                )
            except (KeyError, ValueError, TypeError):
                raise ValidationError(
                    "export", f"line after position {last} is not an export entry"
                ) from None
            if position <= last or recomputed != line.get("digest"):
                return ChainCheck(False, checked, last, previous, position, "entry does not match its digest")
            previous, last, checked = recomputed, position, checked + 1
        if trailer is None:
            return ChainCheck(False, checked, last, previous, last, "the export is truncated (no trailer)")
        head = trailer["head"]
        if head.get("position") != last or head.get("digest") != previous or trailer.get("events") != checked:
            return ChainCheck(False, checked, last, previous, last, "the trailer does not match the entries")
        live = self.queries.chain_digest_at(last) if last else None
        if live is not None and live != previous:
            return ChainCheck(False, checked, last, previous, last, "the export differs from the live log")
        return ChainCheck(True, checked, last, previous)


def _json_line(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        raise ValidationError("export", "a line of the export is not JSON") from None
    if not isinstance(value, dict):
        raise ValidationError("export", "a line of the export is not a JSON object")
    return value


def _parse(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _aware(instant: datetime, field: str) -> datetime:
    if not isinstance(instant, datetime):
        raise ValidationError(field, f"{field} must be an ISO 8601 instant")
    return instant if instant.tzinfo is not None else instant.replace(tzinfo=UTC)


def _check_range(since: datetime | None, until: datetime | None) -> None:
    if since is not None and until is not None and since > until:
        raise ValidationError("since", "since must not be after until")


def _overlap(
    issues: list[tuple[datetime, datetime | None]],
    revoked_at: datetime | None,
    since: datetime,
    until: datetime,
) -> tuple[datetime, datetime | None] | None:
    """The part of [since, until] in which some value of the token was usable, if any.

    Each issue (creation or regeneration) is usable from its instant until the earliest of its
    expiry, the next issue, and the revocation."""
    first: datetime | None = None
    last: datetime | None = None
    open_ended = False
    for index, (start, expires) in enumerate(issues):
        ends = [t for t in (expires, revoked_at) if t is not None]
        if index + 1 < len(issues):
            ends.append(issues[index + 1][0])
        end = min(ends) if ends else None
        if start > until or (end is not None and end <= since) or (end is not None and end <= start):
            continue
        first = start if first is None else min(first, start)
        if end is None:
            open_ended = True
        else:
            last = end if last is None else max(last, end)
    if first is None:
        return None
    # Clipped to the window: when, inside it, some value of the token could be used.
    return max(first, since), until if open_ended or last is None else min(last, until)
