"""The bulk operations' forms: start (who, what, why) and the decisions on an operation.

Forms check shape only (a source with people in it, a known action, the ticket pattern, a CSV
that is a CSV); who is included and why is the dry run's business (``bulk.services.plan``).
"""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile

from bulk import dry_run
from bulk.errors import PlanRefused
from bulk.models import BulkAction, Source
from mfa.forms import REASON_MAX_LENGTH, REASON_MIN_LENGTH

CSV_MAX_BYTES = 2 * 1024 * 1024


def people_from_csv(upload: UploadedFile[Any]) -> list[str]:
    """The people of an uploaded CSV (``bulk.dry_run.parse_csv``: the column upn,
    userPrincipalName, id or objectId, else the first). Raises forms.ValidationError for a file
    that is too large or not text."""
    if upload.size is not None and upload.size > CSV_MAX_BYTES:
        raise forms.ValidationError(f"The file is larger than {CSV_MAX_BYTES // 1024 // 1024} MB.")
    try:
        return dry_run.parse_csv(upload.read())
    except PlanRefused as exc:
        raise forms.ValidationError(exc.message) from exc


class BulkStartForm(forms.Form):
    """Who (pasted, a CSV file or a group), the actions, the reason, the ticket, notify."""

    source = forms.ChoiceField(
        label="People", choices=Source.choices, initial=Source.GROUP, widget=forms.RadioSelect
    )
    people = forms.CharField(
        label="UPNs or object ids",
        required=False,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false"}),
        help_text="One per line (commas and spaces work too).",
    )
    csv_file = forms.FileField(
        label="CSV file",
        required=False,
        help_text="A column named upn, userPrincipalName, id or objectId, else the first column.",
    )
    group = forms.CharField(label="Group", required=False, max_length=64)
    actions = forms.MultipleChoiceField(
        label="Actions",
        choices=BulkAction.choices,
        widget=forms.CheckboxSelectMultiple,
        help_text="Each person's sessions are revoked first, then re-registration is required.",
    )
    reason = forms.CharField(
        label="Reason",
        min_length=REASON_MIN_LENGTH,
        max_length=REASON_MAX_LENGTH,
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="Why, in a sentence: recorded with your name on every person's request.",
    )
    ticket = forms.CharField(label="Ticket or incident", max_length=64)
    notify = forms.BooleanField(
        label="Notify each person and their manager", required=False, initial=True
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["ticket"].help_text = f"For example {settings.PORTAL_TICKET_HINT}."

    def clean_ticket(self) -> str:
        ticket = str(self.cleaned_data["ticket"]).strip().upper()
        if not re.fullmatch(settings.PORTAL_TICKET_PATTERN, ticket, flags=re.IGNORECASE):
            raise forms.ValidationError(
                f"That is not a ticket reference. Use the form {settings.PORTAL_TICKET_HINT}."
            )
        return ticket

    def clean_reason(self) -> str:
        return str(self.cleaned_data["reason"]).strip()

    def clean_actions(self) -> list[str]:
        chosen = set(self.cleaned_data["actions"])
        # The order of execution per person, whatever order the browser sent.
        return [action for action in BulkAction.values if action in chosen]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        source = cleaned.get("source")
        people: list[str] = []
        group_id = ""
        label = ""
        if source == Source.PASTE:
            people = dry_run.split_pasted(str(cleaned.get("people") or ""))
            if not people:
                self.add_error("people", "Paste at least one UPN or object id.")
            label = f"{len(people)} pasted"
        elif source == Source.CSV:
            upload = cleaned.get("csv_file")
            if upload is None:
                self.add_error("csv_file", "Choose a CSV file.")
            else:
                try:
                    people = people_from_csv(upload)
                except forms.ValidationError as exc:
                    self.add_error("csv_file", exc)
                label = str(upload.name or "file.csv")[:256]
        elif source == Source.GROUP:
            group_id = str(cleaned.get("group") or "").strip()
            if not re.fullmatch(r"[0-9a-fA-F-]{36}", group_id):
                self.add_error("group", "Find the group and choose it in the list.")
            label = group_id  # the view names the group from the search it came from
        cleaned["people_list"] = people
        cleaned["group_id"] = group_id
        cleaned["source_label"] = label
        return cleaned


class PersonConfirmForm(forms.Form):
    """An Admin's explicit inclusion of staff and break-glass people refused by the dry run."""

    items = forms.TypedMultipleChoiceField(
        label="Include these people", coerce=int, widget=forms.CheckboxSelectMultiple
    )

    def __init__(self, *args: Any, choices: list[tuple[int, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["items"]
        assert isinstance(field, forms.TypedMultipleChoiceField)
        field.choices = choices


class BulkDecisionForm(forms.Form):
    """An approver's decision, with the comment recorded beside it."""

    decision = forms.ChoiceField(choices=(("approve", "Approve"), ("reject", "Reject")))
    comment = forms.CharField(
        label="Comment",
        max_length=2000,
        required=False,
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text="Recorded with your decision and shown to the starter.",
    )
