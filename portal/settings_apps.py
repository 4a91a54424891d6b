"""The apps' settings (helpdesk policy, directory roles, audit trail, lead dashboard), read from
the environment like the rest: ``portal.settings`` imports every name from here. Split from
``portal/settings.py`` only to keep each file readable; the rules of that module hold here.
"""

from __future__ import annotations

import zoneinfo
from datetime import time
from pathlib import Path

import portal.settings as _base  # the core settings, already read: this module is imported last
from audit import activities as _audit_activities  # plain names, no Django: safe in settings
from portal.config import ConfigError, Env

env = Env()

# --- helpdesk policy (mfa) ---------------------------------------------------------------------
# Ticket references must match this regular expression (anchored), e.g. INC0012345 or HD-123.
PORTAL_TICKET_PATTERN = env.str("PORTAL_TICKET_PATTERN", default=r"(INC|REQ|HD)-?\d{3,10}")
PORTAL_TICKET_HINT = env.str("PORTAL_TICKET_HINT", default="INC0012345, REQ-4567 or HD-123")
# A caller verification backs actions for this long after it succeeded.
PORTAL_VERIFICATION_MAX_AGE_MINUTES = env.int("PORTAL_VERIFICATION_MAX_AGE_MINUTES", default=10)
PORTAL_VERIFICATION_CODE_TTL_MINUTES = env.int("PORTAL_VERIFICATION_CODE_TTL_MINUTES", default=10)
PORTAL_VERIFICATION_MAX_ATTEMPTS = env.int("PORTAL_VERIFICATION_MAX_ATTEMPTS", default=3)
PORTAL_MANUAL_CHECKS = env.list(
    "PORTAL_MANUAL_CHECKS",
    default=[
        "Video call: face matched the HR photo, government ID shown",
        "Call-back to the phone number in the HR system",
        "Verified in person at the service desk with badge",
        "Confirmed by the manager on a call-back",
    ],
)
# Caps on caller verification (mfa.verification), each over a sliding window: manual checks
# one agent may record in 24 hours; codes one agent may send for one person in an hour, and codes
# sent for one person in an hour by everyone (each code mails the person's manager).
PORTAL_MANUAL_CHECKS_PER_DAY = env.int("PORTAL_MANUAL_CHECKS_PER_DAY", default=10)
PORTAL_VERIFICATION_SENDS_PER_AGENT_TARGET = env.int(
    "PORTAL_VERIFICATION_SENDS_PER_AGENT_TARGET", default=3
)
PORTAL_VERIFICATION_SENDS_PER_TARGET = env.int("PORTAL_VERIFICATION_SENDS_PER_TARGET", default=5)
for _name in (
    "PORTAL_MANUAL_CHECKS_PER_DAY",
    "PORTAL_VERIFICATION_SENDS_PER_AGENT_TARGET",
    "PORTAL_VERIFICATION_SENDS_PER_TARGET",
):
    if globals()[_name] < 1:
        raise ConfigError(_name, "must be at least 1")
# The actions a manual caller check alone does not unlock (mfa.policy.approval_reasons): backed
# only by a manual check, such a request waits for a Lead's or Admin's approval as if the person
# were privileged. Entries are action kinds that need a caller verification, or
# ``set_mfa_state:<state>`` for one target state only; ``none`` for no such action.
PORTAL_MANUAL_CHECK_NEEDS_APPROVAL = env.list(
    "PORTAL_MANUAL_CHECK_NEEDS_APPROVAL", default=["issue_tap", "set_mfa_state:disabled"]
)
if [e.lower() for e in PORTAL_MANUAL_CHECK_NEEDS_APPROVAL] == ["none"]:
    PORTAL_MANUAL_CHECK_NEEDS_APPROVAL = []
for _entry in PORTAL_MANUAL_CHECK_NEEDS_APPROVAL:
    _kind, _sep, _value = _entry.partition(":")
    if _kind not in ("reregister", "issue_tap", "set_mfa_state", "delete_method"):
        raise ConfigError(
            "PORTAL_MANUAL_CHECK_NEEDS_APPROVAL",
            f"names {_entry!r}: use reregister, issue_tap, set_mfa_state, "
            "set_mfa_state:<enabled|enforced|disabled>, delete_method, or none",
        )
    if _sep and (_kind != "set_mfa_state" or _value not in ("enabled", "enforced", "disabled")):
        raise ConfigError(
            "PORTAL_MANUAL_CHECK_NEEDS_APPROVAL",
            f"names {_entry!r}: only set_mfa_state takes a state (enabled, enforced or disabled)",
        )
# Unapproved requests on privileged targets expire after this long.
PORTAL_APPROVAL_TTL_MINUTES = env.int("PORTAL_APPROVAL_TTL_MINUTES", default=240)
# Each agent may submit this many actions per window; more needs a lead's override.
PORTAL_AGENT_RATE_LIMIT = env.int("PORTAL_AGENT_RATE_LIMIT", default=20)
PORTAL_AGENT_RATE_WINDOW_MINUTES = env.int("PORTAL_AGENT_RATE_WINDOW_MINUTES", default=60)
# A lead's override lets the agent make this many more requests (within the current window).
PORTAL_RATE_OVERRIDE_REQUESTS = env.int("PORTAL_RATE_OVERRIDE_REQUESTS", default=5)
# The same action on the same person by the same agent within this many minutes of a success
# needs the agent to confirm it with a reason (0: never asked).
PORTAL_REPEAT_WINDOW_MINUTES = env.int("PORTAL_REPEAT_WINDOW_MINUTES", default=5)
for _name, _low in (
    ("PORTAL_AGENT_RATE_LIMIT", 1),
    ("PORTAL_AGENT_RATE_WINDOW_MINUTES", 1),
    ("PORTAL_RATE_OVERRIDE_REQUESTS", 1),
    ("PORTAL_REPEAT_WINDOW_MINUTES", 0),
):
    if globals()[_name] < _low:
        raise ConfigError(_name, f"must be at least {_low}")
if PORTAL_RATE_OVERRIDE_REQUESTS > 1000:
    raise ConfigError("PORTAL_RATE_OVERRIDE_REQUESTS", "must be at most 1000")
# Members of these groups (object ids) are privileged targets even without a directory role.
PORTAL_PROTECTED_GROUP_IDS = env.list("PORTAL_PROTECTED_GROUP_IDS", default=[])
PORTAL_NOTIFY_MANAGER = env.bool("PORTAL_NOTIFY_MANAGER", default=True)
PORTAL_HELPDESK_CONTACT = env.str(
    "PORTAL_HELPDESK_CONTACT", default="the IT service desk on +44 20 7946 0000"
)
# A freshly issued Temporary Access Pass waits (encrypted, in Redis) this long for its agent.
PORTAL_TAP_REVEAL_TTL_SECONDS = env.int("PORTAL_TAP_REVEAL_TTL_SECONDS", default=600)
# Requests recorded but not picked up by a worker within this long are dispatched again.
PORTAL_REDISPATCH_AFTER_SECONDS = env.int("PORTAL_REDISPATCH_AFTER_SECONDS", default=60)
# A `running` request whose worker sent no heartbeat for this long is taken to be orphaned (the
# worker died) and may be claimed again; longer than any single Graph call with its retries.
PORTAL_ACTION_LEASE_SECONDS = env.int("PORTAL_ACTION_LEASE_SECONDS", default=300)
# A re-registration whose deleted methods Graph still lists (directory read-after-write lag)
# re-lists after a backoff for up to this long before it reports them (mfa.runners).
PORTAL_RELIST_TIMEOUT_SECONDS = env.int("PORTAL_RELIST_TIMEOUT_SECONDS", default=120)
if not 0 <= PORTAL_RELIST_TIMEOUT_SECONDS <= 3600:
    raise ConfigError("PORTAL_RELIST_TIMEOUT_SECONDS", "must be between 0 and 3600 seconds")
# Throttled or transient Graph failures are retried this many times before a request fails.
PORTAL_ACTION_MAX_ATTEMPTS = env.int("PORTAL_ACTION_MAX_ATTEMPTS", default=5)
# Without Graph's Retry-After, the n-th retry waits min(60, this * 2 ** (n - 1)) seconds.
PORTAL_RETRY_BACKOFF_SECONDS = env.float("PORTAL_RETRY_BACKOFF_SECONDS", default=5.0)
if PORTAL_RETRY_BACKOFF_SECONDS <= 0:
    raise ConfigError("PORTAL_RETRY_BACKOFF_SECONDS", "must be more than 0")
# A target's roles and tier are cached this long (the person page and the action form share it).
PORTAL_TARGET_CACHE_SECONDS = env.int("PORTAL_TARGET_CACHE_SECONDS", default=180)
# What the tenant's licence allows (PIM or not, accounts.capabilities) is learnt from Graph once
# and kept this long; a PIM call Graph refuses for the licence updates it at once.
PORTAL_CAPABILITIES_CACHE_SECONDS = env.int("PORTAL_CAPABILITIES_CACHE_SECONDS", default=3600)
# A person's methods, sign-in preferences and per-user MFA state (mfa.person_cache) are kept
# this long for the person page; forgotten sooner on the portal's own write, an Entra event the
# audit sync sees, or Refresh. Actions never use it.
PORTAL_PERSON_CACHE_SECONDS = env.int("PORTAL_PERSON_CACHE_SECONDS", default=300)
if not 1 <= PORTAL_PERSON_CACHE_SECONDS <= 86400:
    raise ConfigError("PORTAL_PERSON_CACHE_SECONDS", "must be between 1 and 86400 seconds")
for _name in (
    "PORTAL_ACTION_LEASE_SECONDS",
    "PORTAL_ACTION_MAX_ATTEMPTS",
    "PORTAL_CAPABILITIES_CACHE_SECONDS",
):
    if globals()[_name] < 1:
        raise ConfigError(_name, "must be at least 1")

# The outbox reaper (mfa.tasks): dispatch again what no worker picked up, expire old approvals.
_base.CELERY_BEAT_SCHEDULE.update(
    {
        "mfa-requests-redispatch": {
            "task": "mfa.tasks.requests_redispatch",
            "schedule": 30.0,
            "options": {"queue": "sync", "expires": 30},
        },
        "mfa-requests-expire-stale": {
            "task": "mfa.tasks.requests_expire_stale",
            "schedule": 60.0,
            "options": {"queue": "sync", "expires": 60},
        },
    }
)

# --- directory role administration (roles) -------------------------------------------------------
# The roles /roles/ shows, by Entra display name (template ids: graph.roles.ROLE_TEMPLATES).
_ROLES_SHOWN = (
    "Privileged Authentication Administrator",
    "Authentication Administrator",
    "Authentication Policy Administrator",
    "Privileged Role Administrator",
    "Global Administrator",
)
# Granting these roles waits for a second Admin's approval.
ROLES_REQUIRING_APPROVAL = env.list(
    "ROLES_REQUIRING_APPROVAL",
    default=["Privileged Authentication Administrator", "Privileged Role Administrator"],
)
# Shown, never changed through the portal.
ROLES_READ_ONLY = env.list("ROLES_READ_ONLY", default=["Global Administrator"])
for _name in ("ROLES_REQUIRING_APPROVAL", "ROLES_READ_ONLY"):
    _unknown = [r for r in globals()[_name] if r not in _ROLES_SHOWN]
    if _unknown:
        raise ConfigError(_name, f"names roles the portal does not manage: {_unknown}")
# Warnings on /roles/: more people holding PAA than this; Global Administrators outside min..max;
# an eligibility ending within this many days; "added outside the portal" looked for this far back.
ROLES_PAA_CEILING = env.int("ROLES_PAA_CEILING", default=4)
ROLES_GLOBAL_ADMIN_MIN = env.int("ROLES_GLOBAL_ADMIN_MIN", default=2)
ROLES_GLOBAL_ADMIN_MAX = env.int("ROLES_GLOBAL_ADMIN_MAX", default=4)
ROLES_EXPIRY_WARNING_DAYS = env.int("ROLES_EXPIRY_WARNING_DAYS", default=14)
ROLES_DRIFT_LOOKBACK_DAYS = env.int("ROLES_DRIFT_LOOKBACK_DAYS", default=30)
# Beat re-reads every holder this often (sync priority); the page's button does it at once.
ROLES_REFRESH_SECONDS = env.int("ROLES_REFRESH_SECONDS", default=900)
# PIM provisions requests asynchronously and directory reads lag: a role change Graph accepted is
# read back with backoff (the engine's retry, a visible "provisioning" step, never re-sent) for up
# to this long; then it ends "not yet visible after N s; check Entra" (roles.runners).
ROLES_PROPAGATION_TIMEOUT_SECONDS = env.int("ROLES_PROPAGATION_TIMEOUT_SECONDS", default=300)
if not 0 <= ROLES_PROPAGATION_TIMEOUT_SECONDS <= 3600:
    raise ConfigError("ROLES_PROPAGATION_TIMEOUT_SECONDS", "must be between 0 and 3600 seconds")
# The portal's tiering follows Entra's: only people who hold Privileged Authentication
# Administrator in the tenant (checked through Graph, cached this long) act on privileged people.
PORTAL_MIRROR_ENTRA_TIERING = env.bool("PORTAL_MIRROR_ENTRA_TIERING", default=True)
PORTAL_PAA_CHECK_CACHE_SECONDS = env.int("PORTAL_PAA_CHECK_CACHE_SECONDS", default=180)
for _name in ("ROLES_PAA_CEILING", "ROLES_GLOBAL_ADMIN_MIN", "ROLES_REFRESH_SECONDS"):
    if globals()[_name] < 1:
        raise ConfigError(_name, "must be at least 1")
if ROLES_GLOBAL_ADMIN_MAX < ROLES_GLOBAL_ADMIN_MIN:
    raise ConfigError("ROLES_GLOBAL_ADMIN_MAX", "must not be below ROLES_GLOBAL_ADMIN_MIN")

# Expired sessions are deleted once a day (Django's clearsessions, accounts.tasks).
_base.CELERY_BEAT_SCHEDULE["accounts-sessions-clear-expired"] = {
    "task": "accounts.tasks.sessions_clear_expired",
    "schedule": 86400.0,
    "options": {"queue": "sync", "expires": 86400},
}

_base.CELERY_BEAT_SCHEDULE.update(
    {
        "roles-holders-refresh": {
            "task": "roles.tasks.role_holders_refresh_scheduled",
            "schedule": float(ROLES_REFRESH_SECONDS),
            "options": {"queue": "sync", "expires": float(ROLES_REFRESH_SECONDS)},
        },
        "roles-changes-redispatch": {
            "task": "roles.tasks.role_changes_redispatch",
            "schedule": 30.0,
            "options": {"queue": "sync", "expires": 30},
        },
    }
)

# --- audit trail (audit) -------------------------------------------------------------------------
# The incremental sync of Entra's directory audit log into the local cache (audit.sync).
AUDIT_SYNC_INTERVAL_SECONDS = env.int("AUDIT_SYNC_INTERVAL_SECONDS", default=300)
# Each run re-reads this far behind the watermark: Entra may publish an event minutes after it
# happened; duplicates are dropped by event id.
AUDIT_SYNC_OVERLAP_MINUTES = env.int("AUDIT_SYNC_OVERLAP_MINUTES", default=30)
AUDIT_SYNC_PAGE_SIZE = env.int("AUDIT_SYNC_PAGE_SIZE", default=500)
# A run holds the sync's lease this long past its last page; a crashed run's lease then lapses.
AUDIT_SYNC_LEASE_SECONDS = env.int("AUDIT_SYNC_LEASE_SECONDS", default=600)
# How far back the very first run reads (manage.py audit_backfill --since loads older events).
AUDIT_SYNC_INITIAL_DAYS = env.int("AUDIT_SYNC_INITIAL_DAYS", default=30)
# Events kept: category in AUDIT_KEEP_CATEGORIES (empty: any) and activity in
# AUDIT_KEEP_ACTIVITIES; "Activity:Property" keeps that activity only when it modifies the
# property (per-user MFA is an "Update user" that changes StrongAuthenticationRequirement).
AUDIT_KEEP_CATEGORIES = env.list(
    "AUDIT_KEEP_CATEGORIES", default=list(_audit_activities.DEFAULT_KEEP_CATEGORIES)
)
# The default names every activity the portal relies on, exactly as Microsoft's audit activity
# reference spells them (audit/activities.py cites each group).
AUDIT_KEEP_ACTIVITIES = env.list(
    "AUDIT_KEEP_ACTIVITIES", default=list(_audit_activities.DEFAULT_KEEP_ACTIVITIES)
)
# An Entra event belongs to a portal request when it falls between the request's start minus
# this slack and its end plus this slack (Entra's timestamps and the portal's clock differ a bit).
AUDIT_CORRELATION_WINDOW_MINUTES = env.int("AUDIT_CORRELATION_WINDOW_MINUTES", default=10)
# Cached Entra events older than this are pruned (the portal's own log is never pruned).
AUDIT_RETENTION_DAYS = env.int("AUDIT_RETENTION_DAYS", default=730)
AUDIT_PRUNE_INTERVAL_SECONDS = env.int("AUDIT_PRUNE_INTERVAL_SECONDS", default=86400)
for _name in (
    "AUDIT_SYNC_INTERVAL_SECONDS",
    "AUDIT_SYNC_LEASE_SECONDS",
    "AUDIT_RETENTION_DAYS",
    "AUDIT_PRUNE_INTERVAL_SECONDS",
):
    if globals()[_name] < 1:
        raise ConfigError(_name, "must be at least 1")
for _name in (
    "AUDIT_SYNC_OVERLAP_MINUTES",
    "AUDIT_SYNC_INITIAL_DAYS",
    "AUDIT_CORRELATION_WINDOW_MINUTES",
):
    if globals()[_name] < 0:
        raise ConfigError(_name, "must not be negative")
if not 1 <= AUDIT_SYNC_PAGE_SIZE <= 999:
    raise ConfigError("AUDIT_SYNC_PAGE_SIZE", "must be between 1 and 999")

# The portal event log's HMAC key (audit.chain), kept outside the database so that someone who
# can write the table cannot recompute the chain. Keep it as long as the log: events written
# under another key no longer verify.
AUDIT_CHAIN_KEY = _base._own_key(
    "AUDIT_CHAIN_KEY", env.secret("AUDIT_CHAIN_KEY", default=None), demo_file="audit-chain-key"
)
# The chain's head is anchored outside the database every AUDIT_ANCHOR_INTERVAL_SECONDS
# (audit.anchors): appended to AUDIT_ANCHOR_FILE (empty: none), logged on "audit.anchor".
AUDIT_ANCHOR_FILE = env.str("AUDIT_ANCHOR_FILE", default=str(_base.VAR_DIR / "audit-anchors.jsonl"))
AUDIT_ANCHOR_LOG = env.bool("AUDIT_ANCHOR_LOG", default=True)
AUDIT_ANCHOR_INTERVAL_SECONDS = env.int("AUDIT_ANCHOR_INTERVAL_SECONDS", default=300)
if AUDIT_ANCHOR_FILE and not Path(AUDIT_ANCHOR_FILE).is_absolute():
    raise ConfigError("AUDIT_ANCHOR_FILE", f"must be an absolute path, not {AUDIT_ANCHOR_FILE!r}")
if not (AUDIT_ANCHOR_FILE or AUDIT_ANCHOR_LOG):
    raise ConfigError("AUDIT_ANCHOR_FILE", "is empty and AUDIT_ANCHOR_LOG off: no anchor anywhere")
if AUDIT_ANCHOR_INTERVAL_SECONDS < 1:
    raise ConfigError("AUDIT_ANCHOR_INTERVAL_SECONDS", "must be at least 1")

# Background reads at the lowest priority (9 on the Redis transport), on the sync queue.
_base.CELERY_BEAT_SCHEDULE.update(
    {
        "audit-entra-sync": {
            "task": "audit.tasks.entra_audit_sync",
            "schedule": float(AUDIT_SYNC_INTERVAL_SECONDS),
            "options": {"queue": "sync", "priority": 9, "expires": AUDIT_SYNC_INTERVAL_SECONDS},
        },
        "audit-entra-prune": {
            "task": "audit.tasks.entra_audit_prune",
            "schedule": float(AUDIT_PRUNE_INTERVAL_SECONDS),
            "options": {"queue": "sync", "priority": 9, "expires": AUDIT_PRUNE_INTERVAL_SECONDS},
        },
        # Not at the lowest priority: a late anchor widens the window in which the newest
        # events could be removed unseen.
        "audit-chain-anchor": {
            "task": "audit.tasks.audit_chain_anchor",
            "schedule": float(AUDIT_ANCHOR_INTERVAL_SECONDS),
            "options": {"queue": "sync", "expires": AUDIT_ANCHOR_INTERVAL_SECONDS},
        },
    }
)

# --- lead dashboard (audit.dashboard) -----------------------------------------------------------
# Charts cover this many days; the "outside hours", "privileged" and "outside the portal" flags
# look back DASHBOARD_FLAG_DAYS.
DASHBOARD_WINDOW_DAYS = env.int("DASHBOARD_WINDOW_DAYS", default=30)
DASHBOARD_FLAG_DAYS = env.int("DASHBOARD_FLAG_DAYS", default=7)
# An agent is flagged when their actions in the last 24 hours reach DASHBOARD_VOLUME_MIN_ACTIONS
# and exceed DASHBOARD_VOLUME_MULTIPLE times their daily average over the DASHBOARD_BASELINE_DAYS
# before.
DASHBOARD_VOLUME_MULTIPLE = env.float("DASHBOARD_VOLUME_MULTIPLE", default=3.0)
DASHBOARD_VOLUME_MIN_ACTIONS = env.int("DASHBOARD_VOLUME_MIN_ACTIONS", default=5)
DASHBOARD_BASELINE_DAYS = env.int("DASHBOARD_BASELINE_DAYS", default=30)
# Business hours ("HH:MM-HH:MM", start inclusive, end exclusive) on these weekdays, in this zone.
DASHBOARD_BUSINESS_HOURS = env.str("DASHBOARD_BUSINESS_HOURS", default="08:00-18:00")
DASHBOARD_BUSINESS_DAYS = env.list(
    "DASHBOARD_BUSINESS_DAYS", default=["mon", "tue", "wed", "thu", "fri"]
)
DASHBOARD_TIMEZONE = env.str("DASHBOARD_TIMEZONE", default=_base.TIME_ZONE)
# A person whose MFA was reset more than DASHBOARD_REPEAT_RESET_MAX times within
# DASHBOARD_REPEAT_RESET_DAYS is flagged; these action kinds count as resets.
DASHBOARD_REPEAT_RESET_DAYS = env.int("DASHBOARD_REPEAT_RESET_DAYS", default=7)
DASHBOARD_REPEAT_RESET_MAX = env.int("DASHBOARD_REPEAT_RESET_MAX", default=1)
DASHBOARD_RESET_KINDS = env.list("DASHBOARD_RESET_KINDS", default=["reregister"])
# An agent who recorded at least this many manual caller checks in the last 24 hours is flagged.
DASHBOARD_MANUAL_CHECKS_MIN = env.int("DASHBOARD_MANUAL_CHECKS_MIN", default=5)
# A bulk operation on more than DASHBOARD_BULK_LARGE people, or more than
# DASHBOARD_BULK_REPEAT_MAX confirmed by one person within DASHBOARD_REPEAT_RESET_DAYS, is flagged.
DASHBOARD_BULK_LARGE = env.int("DASHBOARD_BULK_LARGE", default=100)
DASHBOARD_BULK_REPEAT_MAX = env.int("DASHBOARD_BULK_REPEAT_MAX", default=2)
for _name in (
    "DASHBOARD_BULK_LARGE",
    "DASHBOARD_BULK_REPEAT_MAX",
    "DASHBOARD_MANUAL_CHECKS_MIN",
    "DASHBOARD_WINDOW_DAYS",
    "DASHBOARD_FLAG_DAYS",
    "DASHBOARD_VOLUME_MIN_ACTIONS",
    "DASHBOARD_BASELINE_DAYS",
    "DASHBOARD_REPEAT_RESET_DAYS",
    "DASHBOARD_REPEAT_RESET_MAX",
):
    if globals()[_name] < 1:
        raise ConfigError(_name, "must be at least 1")
if DASHBOARD_VOLUME_MULTIPLE <= 0:
    raise ConfigError("DASHBOARD_VOLUME_MULTIPLE", "must be greater than 0")
_hours = DASHBOARD_BUSINESS_HOURS.replace(" ", "").split("-")
try:
    if len(_hours) != 2:
        raise ValueError("two times")
    DASHBOARD_BUSINESS_START, DASHBOARD_BUSINESS_END = (time.fromisoformat(part) for part in _hours)
except ValueError as _exc:
    raise ConfigError("DASHBOARD_BUSINESS_HOURS", "must look like 08:00-18:00") from _exc
if DASHBOARD_BUSINESS_START >= DASHBOARD_BUSINESS_END:
    raise ConfigError("DASHBOARD_BUSINESS_HOURS", "must end after it starts")
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_bad_days = [d for d in DASHBOARD_BUSINESS_DAYS if d.lower()[:3] not in _WEEKDAYS]
if _bad_days or not DASHBOARD_BUSINESS_DAYS:
    raise ConfigError("DASHBOARD_BUSINESS_DAYS", f"must name weekdays (mon..sun), not {_bad_days}")
DASHBOARD_BUSINESS_WEEKDAYS = frozenset(
    _WEEKDAYS.index(d.lower()[:3]) for d in DASHBOARD_BUSINESS_DAYS
)
try:
    zoneinfo.ZoneInfo(DASHBOARD_TIMEZONE)
except (zoneinfo.ZoneInfoNotFoundError, ValueError) as _exc:
    raise ConfigError("DASHBOARD_TIMEZONE", f"is not a time zone: {DASHBOARD_TIMEZONE!r}") from _exc
_ACTION_KINDS = ("reregister", "revoke_sessions", "issue_tap", "set_mfa_state", "delete_method")
_unknown_kinds = [k for k in DASHBOARD_RESET_KINDS if k not in _ACTION_KINDS]
if _unknown_kinds:
    raise ConfigError("DASHBOARD_RESET_KINDS", f"names unknown action kinds: {_unknown_kinds}")

# --- notices of what waits for someone (helper C's block: mfa.notifications, mfa.webhook) -------
# Approvers, takers of an escalation and the second Admin of a role grant get an email when
# something starts waiting for them (PORTAL_NOTIFY_APPROVERS) with a link built on
# PORTAL_BASE_URL (the portal's address as people open it; empty: the email names the page).
PORTAL_BASE_URL = env.str(
    "PORTAL_BASE_URL",
    default=(
        f"http://127.0.0.1:{env.int('PORTAL_PORT', default=8000)}"
        if env.bool("PORTAL_DEMO", default=False)
        else ""
    ),
).rstrip("/")
if PORTAL_BASE_URL and not PORTAL_BASE_URL.startswith(("https://", "http://")):
    raise ConfigError("PORTAL_BASE_URL", "must start with https:// (or http:// in the demo)")
PORTAL_NOTIFY_APPROVERS = env.bool("PORTAL_NOTIFY_APPROVERS", default=True)
# Optionally also a post to an incoming webhook: a Teams Workflows "When a Teams webhook request
# is received" URL or a Slack incoming webhook (JSON body; never a reason, code or pass).
PORTAL_NOTIFY_WEBHOOK_URL = env.str("PORTAL_NOTIFY_WEBHOOK_URL", default="")
# teams (an Adaptive Card), slack ({"text": ...}) or auto (slack for hooks.slack.com).
PORTAL_NOTIFY_WEBHOOK_FORMAT = env.str("PORTAL_NOTIFY_WEBHOOK_FORMAT", default="auto")
# A failed post (network, 408, 429, 5xx) is retried by Celery: this many attempts in all, the
# n-th retry after this * 2 ** (n - 1) seconds (at most 10 minutes).
PORTAL_NOTIFY_WEBHOOK_ATTEMPTS = env.int("PORTAL_NOTIFY_WEBHOOK_ATTEMPTS", default=5)
PORTAL_NOTIFY_WEBHOOK_BACKOFF_SECONDS = env.float(
    "PORTAL_NOTIFY_WEBHOOK_BACKOFF_SECONDS", default=30.0
)
if PORTAL_NOTIFY_WEBHOOK_FORMAT not in ("auto", "teams", "slack"):
    raise ConfigError("PORTAL_NOTIFY_WEBHOOK_FORMAT", "must be auto, teams or slack")
if PORTAL_NOTIFY_WEBHOOK_URL:
    from urllib.parse import urlsplit as _urlsplit

    from portal.config import is_loopback_host as _is_loopback_host

    _hook = _urlsplit(PORTAL_NOTIFY_WEBHOOK_URL)
    if not _hook.netloc or (
        _hook.scheme != "https" and not (_hook.scheme == "http" and _is_loopback_host(_hook.netloc))
    ):
        raise ConfigError(
            "PORTAL_NOTIFY_WEBHOOK_URL", "must be an https:// URL (http:// only on loopback)"
        )
if not 1 <= PORTAL_NOTIFY_WEBHOOK_ATTEMPTS <= 20:
    raise ConfigError("PORTAL_NOTIFY_WEBHOOK_ATTEMPTS", "must be between 1 and 20")
if PORTAL_NOTIFY_WEBHOOK_BACKOFF_SECONDS <= 0:
    raise ConfigError("PORTAL_NOTIFY_WEBHOOK_BACKOFF_SECONDS", "must be more than 0")

# --- incident response: bulk operations (helper S's block: bulk.services, bulk.flow) -----------
# An operation on more people than this (or with any privileged person included) waits for a
# second person's approval (a Lead, Responder or Admin, never the starter).
PORTAL_BULK_APPROVAL_THRESHOLD = env.int("PORTAL_BULK_APPROVAL_THRESHOLD", default=25)
# The most people one operation may name (after duplicates are counted): a larger list is
# refused with nothing stored.
PORTAL_BULK_MAX_PEOPLE = env.int("PORTAL_BULK_MAX_PEOPLE", default=1000)
# Break-glass accounts (Entra object ids): never included without an Admin's per-person
# confirmation, like the portal's own staff.
PORTAL_BREAK_GLASS_IDS = [
    i.strip().lower() for i in env.list("PORTAL_BREAK_GLASS_IDS", default=[]) if i.strip()
]
if PORTAL_BULK_APPROVAL_THRESHOLD < 0:
    raise ConfigError("PORTAL_BULK_APPROVAL_THRESHOLD", "must be 0 or more")
if not 1 <= PORTAL_BULK_MAX_PEOPLE <= 100_000:
    raise ConfigError("PORTAL_BULK_MAX_PEOPLE", "must be between 1 and 100000")
_base.CELERY_BEAT_SCHEDULE.update(
    {
        "bulk-operations-redispatch": {
            "task": "bulk.tasks.operations_redispatch",
            "schedule": 30.0,
            "options": {"queue": "sync", "expires": 30},
        },
        "bulk-operations-expire-stale": {
            "task": "bulk.tasks.operations_expire_stale",
            "schedule": 60.0,
            "options": {"queue": "sync", "expires": 60},
        },
    }
)
