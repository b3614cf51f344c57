"""Pools, usage and the audit trail as JSON: the shapes the REST API returns, and
``slotwise quota ... --json`` prints, for scripts. Amounts are written as documents write them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from quota.config import Pool, document_amounts
from quota.ledger import Ledger
from quota.usage import loans, pool_usage
from scheduler.model.resources import format_quota_amount

if TYPE_CHECKING:  # the store loads SQLAlchemy, which the CLI's views need not
    from quota.store import AuditEntry


def pool_json(p: Pool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": p.name, "parent": p.parent, "description": p.description, "public": p.public,
                           "weight": p.weight}
    for kind, amounts in p.limits():
        out[kind] = document_amounts(amounts)
    out["budget"] = {"per_day": p.budget.per_day, "per_month": p.budget.per_month} if p.budget else None
    return out


def usage_json(ledger: Ledger, visible: set[str] | None = None, *, viewer: bool = False) -> dict[str, Any]:
    """Per pool and resource, what is guaranteed, used, borrowed and lent, and who borrows from
    whom; only pools in ``visible`` (and loans touching them) when given. For a ``viewer`` the
    other side of such a loan is null: it sees how much its pools lend and borrow, not to or from
    whom."""
    credited = loans(ledger)
    rows = [r for r in pool_usage(ledger, credited) if visible is None or r.pool in visible]
    return {
        "pools": [{"pool": r.pool, "parent": r.parent, "resource": r.resource,
                   "guaranteed": format_quota_amount(r.resource, r.guaranteed),
                   "max": None if r.max is None else format_quota_amount(r.resource, r.max),
                   "used": format_quota_amount(r.resource, r.used),
                   "borrowed": format_quota_amount(r.resource, r.borrowed),
                   "lent": format_quota_amount(r.resource, r.lent), "workloads": r.workloads} for r in rows],
        "loans": [{"borrower": _shown(loan.borrower, visible, viewer), "lender": _shown(loan.lender, visible, viewer),
                   "resource": loan.resource,
                   "amount": format_quota_amount(loan.resource, loan.amount)} for loan in credited
                  if visible is None or loan.borrower in visible or loan.lender in visible],
    }


def _shown(pool: str, visible: set[str] | None, viewer: bool) -> str | None:
    return None if viewer and visible is not None and pool not in visible else pool


def audit_json(entries: Iterable[AuditEntry]) -> list[dict[str, Any]]:
    return [{"id": e.id, "at": e.at.isoformat(), "actor": e.actor, "action": e.action, "subject": e.subject,
             "detail": e.detail} for e in entries]
