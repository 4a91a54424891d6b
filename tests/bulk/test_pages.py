"""The bulk operations' pages (bulk.views), through the test client against the real services
and the HTTPS emulator: start from a group, a pasted list or a CSV file; the dry run's page;
bad input refused with nothing stored; the Admin's per-person inclusion; the approval; the live
fragment's "nothing moved"; the export. (The whole journey with a worker: tests/browser/
test_bulk_journey.py; who gets which answer on every URL: tests/security/.)"""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client, override_settings

from bulk.models import DRAFT, BulkItem, BulkOperation, Refusal
from entra_emulator.seed import GROUP_IDS, PHISHING_GROUP
from tests.personas import PERSONAS, signed_in

pytestmark = pytest.mark.django_db

PHISHING_ID = GROUP_IDS[PHISHING_GROUP]
REASON = "Phishing campaign: the people who clicked sign in again everywhere"


def _start(client: Client, **fields: Any) -> Any:
    data = {
        "source": "group",
        "group": PHISHING_ID,
        # What the chosen radio of the group search sends with it: the group's name.
        f"group_name_{PHISHING_ID}": PHISHING_GROUP,
        "actions": ["revoke_sessions", "reregister"],
        "reason": REASON,
        "ticket": "INC0099100",
        "notify": "on",
        **fields,
    }
    return client.post("/bulk/new/", data)


def _only_operation() -> BulkOperation:
    (operation,) = BulkOperation.objects.all()
    return operation


def test_the_group_search_lists_the_incident_group(tenant: Any) -> None:
    html = signed_in(PERSONAS.responder).get("/bulk/new/groups/?q=Phish").content.decode()
    assert f'value="{PHISHING_ID}"' in html
    assert "Phishing campaign 2026-12" in html
    assert "Phishing campaign 2026-12: late reports" in html


def test_starting_from_the_group_shows_the_dry_run_with_its_refusals(tenant: Any) -> None:
    rita = signed_in(PERSONAS.responder)
    response = _start(rita)
    operation = _only_operation()
    assert response.status_code == 302
    assert response["Location"] == f"/bulk/{operation.public_id}/"
    # Named after the group chosen (the name its radio came with), not its id.
    assert operation.source == "group" and operation.source_label == PHISHING_GROUP
    assert operation.status == DRAFT and operation.actions == ["revoke_sessions", "reregister"]

    html = rita.get(response["Location"]).content.decode()
    assert "Dry run:" in html and "Nothing has been done yet." in html
    assert "data-included-count>33<" in html and "data-refused-count>3<" in html
    for refusal in (Refusal.PRIVILEGED_WITHOUT_PAA, Refusal.STARTER, Refusal.DISABLED):
        assert f'data-refusal="{refusal}"' in html, refusal
    assert PERSONAS.privileged_target.display_name in html
    assert operation.dry_run["estimate_text"] in html
    # 33 people > 25: the page says a second person approves it; the only button is Confirm.
    assert "data-needs-approval" in html
    assert "data-confirm" in html and "data-pause" not in html and "data-export" not in html
    # A dry run is not polled: nothing moves until it is confirmed.
    assert "hx-trigger" not in html.split('id="bulk-live"')[1].split(">")[0]


def test_pasted_people_and_a_csv_file_are_dry_run_too(tenant: Any) -> None:
    rita = signed_in(PERSONAS.responder)
    sam = PERSONAS.standard_target.upn
    response = _start(rita, source="paste", group="", people=f"{sam}\n{sam}, nobody@example.com")
    assert response.status_code == 302
    pasted = _only_operation()
    assert pasted.source == "paste" and pasted.source_label == "3 pasted"
    refusals = sorted(BulkItem.objects.filter(operation=pasted).values_list("refusal", flat=True))
    assert refusals == ["", Refusal.DUPLICATE, Refusal.NOT_FOUND]

    upload = io.StringIO()
    csv.writer(upload).writerows([["name", "userPrincipalName"], ["Sam", sam]])
    csv_file = SimpleUploadedFile("clicked.csv", upload.getvalue().encode(), "text/csv")
    response = _start(rita, source="csv", group="", csv_file=csv_file)
    assert response.status_code == 302
    from_csv = BulkOperation.objects.exclude(pk=pasted.pk).get()
    assert from_csv.source == "csv" and from_csv.source_label == "clicked.csv"
    assert list(BulkItem.objects.filter(operation=from_csv).values_list("upn", flat=True)) == [sam]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"actions": []}, "This field is required."),
        ({"ticket": "no ticket"}, "That is not a ticket reference."),
        ({"group": ""}, "Find the group and choose it in the list."),
        ({"source": "paste", "people": " \n "}, "Paste at least one UPN or object id."),
        ({"source": "csv"}, "Choose a CSV file."),
    ],
)
def test_bad_input_is_refused_and_nothing_is_stored(
    tenant: Any, fields: dict[str, Any], message: str
) -> None:
    response = _start(signed_in(PERSONAS.responder), **fields)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not BulkOperation.objects.exists()


@override_settings(PORTAL_BULK_MAX_PEOPLE=2)
def test_more_people_than_the_maximum_is_refused_with_a_sentence(tenant: Any) -> None:
    response = _start(signed_in(PERSONAS.responder))
    assert response.status_code == 400
    html = response.content.decode()
    assert "data-problem" in html and "PORTAL_BULK_MAX_PEOPLE" in html
    assert not BulkOperation.objects.exists()


@override_settings(PORTAL_BREAK_GLASS_IDS=[PERSONAS.standard_target.oid])
def test_an_admin_includes_a_break_glass_account_the_dry_run_refused(tenant: Any) -> None:
    rita = signed_in(PERSONAS.responder)
    _start(rita, source="paste", group="", people=PERSONAS.standard_target.upn)
    operation = _only_operation()
    sam = BulkItem.objects.get(operation=operation, target_id=PERSONAS.standard_target.oid)
    assert sam.refusal == Refusal.STAFF_OR_BREAK_GLASS and not sam.included
    url = f"/bulk/{operation.public_id}/"
    # Rita sees why, not the inclusion form; she cannot include him herself.
    assert "data-people-confirm" not in rita.get(url).content.decode()
    assert rita.post(f"{url}people/", {"items": [sam.pk]}).status_code == 403

    ana = signed_in(PERSONAS.admin)
    assert "data-people-confirm" in ana.get(url).content.decode()
    # Nothing ticked: a message, nothing changed.
    assert ana.post(f"{url}people/", {}).status_code == 302
    sam.refresh_from_db()
    assert not sam.included
    assert ana.post(f"{url}people/", {"items": [sam.pk]}).status_code == 302
    sam.refresh_from_db()
    assert sam.included and sam.admin_confirmed_by_name == PERSONAS.admin.display_name
    assert f"Included by {PERSONAS.admin.display_name}" in rita.get(url).content.decode()


def test_a_large_operation_waits_for_an_approver_who_is_not_the_starter(tenant: Any) -> None:
    rita = signed_in(PERSONAS.responder)
    _start(rita)
    operation = _only_operation()
    url = f"/bulk/{operation.public_id}/"
    # A Lead does not see Rita's dry run until she confirms it.
    leo = signed_in(PERSONAS.lead)
    assert leo.get(url).status_code == 404
    assert rita.post(f"{url}confirm/").status_code == 302
    operation.refresh_from_db()
    assert operation.status == "awaiting_approval"
    # Rita never decides her own; Leo sees the operation waiting for him and approves it.
    assert rita.post(f"{url}decide/", {"decision": "approve"}).status_code == 403
    assert "data-decide" not in rita.get(url).content.decode()
    assert str(operation.public_id) in leo.get("/bulk/").content.decode().split("data-waiting")[1]
    assert "data-decide" in leo.get(url).content.decode()
    answer = leo.post(f"{url}decide/", {"decision": "approve", "comment": "Go"})
    assert answer.status_code == 302
    operation.refresh_from_db()
    assert operation.status == "pending" and operation.decided_by_name == "Leo Lead"


def test_the_live_fragment_answers_204_when_nothing_moved(tenant: Any) -> None:
    rita = signed_in(PERSONAS.responder)
    _start(rita, source="paste", group="", people=PERSONAS.standard_target.upn)
    operation = _only_operation()
    url = f"/bulk/{operation.public_id}/"
    rita.post(f"{url}confirm/")
    page = rita.get(url).content.decode()
    # Confirmed (one person: no approval needed): the page polls its fragment every second.
    assert 'hx-trigger="every 1s"' in page
    stamp = page.split("?seen=")[1].split('"')[0]
    fragment = rita.get(f"{url}?seen=nothing-yet", HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200 and b'id="bulk-live"' in fragment.content
    assert b"<html" not in fragment.content
    assert rita.get(f"{url}?seen={stamp}", HTTP_HX_REQUEST="true").status_code == 204
    rita.post(f"{url}pause/")
    # Paused: the state moved, so the same stamp gets the new fragment.
    moved = rita.get(f"{url}?seen={stamp}", HTTP_HX_REQUEST="true")
    assert moved.status_code == 200 and b"data-paused-by" in moved.content


def test_the_export_lists_every_person_with_the_outcome(tenant: Any) -> None:
    rita = signed_in(PERSONAS.responder)
    _start(rita)
    operation = _only_operation()
    response = rita.get(f"/bulk/{operation.public_id}/export.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert f"bulk-{operation.public_id}.csv" in response["Content-Disposition"]
    streamed: Any = response
    rows = list(csv.reader(io.StringIO(b"".join(streamed.streaming_content).decode())))
    assert rows[0][:3] == ["position", "asked", "upn"]
    assert len(rows) == 1 + BulkItem.objects.filter(operation=operation).count()
    refusals = {row[rows[0].index("refusal")] for row in rows[1:]}
    assert {Refusal.PRIVILEGED_WITHOUT_PAA, Refusal.STARTER, Refusal.DISABLED} <= refusals


def test_a_refused_form_keeps_the_group_chosen(tenant: Any) -> None:
    response = _start(signed_in(PERSONAS.responder), ticket="no ticket")
    assert response.status_code == 400
    html = response.content.decode()
    assert f'value="{PHISHING_ID}" checked' in html and PHISHING_GROUP in html
