"""The helpdesk URLs (namespace ``mfa``), mounted at the site root by portal/urls.py."""

from __future__ import annotations

from django.urls import path, register_converter

from mfa.views import action_requests, actions, approvals, escalations, people, verification


class GuidConverter:
    """An object id or public id: a GUID, passed to the view as a lower-case string. Nothing
    else reaches Graph from a URL path."""

    regex = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"

    def to_python(self, value: str) -> str:
        return value.lower()

    def to_url(self, value: object) -> str:
        return str(value).lower()


register_converter(GuidConverter, "guid")

app_name = "mfa"

urlpatterns = [
    path("users/", people.user_search, name="user_search"),
    path("users/<guid:oid>/", people.user_detail, name="user_detail"),
    # The person page's panels: Graph fragments that may wait for the budget, Refresh, and the
    # Entra events from the local audit cache with "sync this person now".
    path(
        "users/<guid:oid>/panels/methods/",
        people.user_panel,
        {"panel": "methods"},
        name="user_panel_methods",
    ),
    path(
        "users/<guid:oid>/panels/mfa/", people.user_panel, {"panel": "mfa"}, name="user_panel_mfa"
    ),
    path(
        "users/<guid:oid>/panels/refresh/",
        people.user_panels_refresh,
        name="user_panels_refresh",
    ),
    path(
        "users/<guid:oid>/panels/entra-events/",
        people.user_entra_events,
        name="user_entra_events",
    ),
    path(
        "users/<guid:oid>/panels/entra-events/sync/",
        people.user_entra_sync,
        name="user_entra_sync",
    ),
    path("users/<guid:oid>/verify/send/", verification.verify_send, name="verify_send"),
    path("users/<guid:oid>/verify/check/", verification.verify_check, name="verify_check"),
    path("users/<guid:oid>/verify/manual/", verification.verify_manual, name="verify_manual"),
    path("users/<guid:oid>/actions/<slug:kind>/", actions.action_form, name="action_form"),
    path("requests/", action_requests.request_list, name="request_list"),
    path("requests/<guid:public_id>/", action_requests.request_detail, name="request_detail"),
    path(
        "requests/<guid:public_id>/cancel/", action_requests.request_cancel, name="request_cancel"
    ),
    path("requests/<guid:public_id>/tap/", action_requests.request_tap, name="request_tap"),
    path("approvals/", approvals.approvals, name="approvals"),
    path("approvals/<guid:public_id>/", approvals.approval_decide, name="approval_decide"),
    path("approvals/rate-override/", approvals.rate_override, name="rate_override"),
    path("escalations/", escalations.escalation_queue, name="escalations"),
    path(
        "escalations/<guid:public_id>/",
        escalations.escalation_decide,
        name="escalation_decide",
    ),
    path("mailbox/", verification.mailbox, name="mailbox"),
]
