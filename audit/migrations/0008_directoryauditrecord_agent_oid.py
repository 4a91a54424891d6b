"""``DirectoryAuditRecord.agent_oid``: the person behind each cached Entra record, denormalised.

The history's agent filter used to look up the agent's requests and then each request's records
(``action_request = ANY(<every request of the agent>)``), which costs in proportion to how many
requests the agent ever made. With the agent stored on the record, the filter is one range scan
of the ``(agent_oid, activity_at)`` index. The backfill fills existing rows (the requester's
object id, the Django username, for linked records; the initiating user for the others) before
the index is built; ``audit.correlation`` keeps the column in step from then on.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations, models
from django.db.models import OuterRef, Subquery


def backfill_agent_oid(apps: Any, schema_editor: Any) -> None:
    record = apps.get_model("audit", "DirectoryAuditRecord")
    request = apps.get_model("mfa", "ActionRequest")
    requester = request.objects.filter(pk=OuterRef("action_request_id")).values(
        "requester__username"
    )[:1]
    record.objects.filter(action_request__isnull=False).update(agent_oid=Subquery(requester))
    record.objects.filter(action_request__isnull=True, initiated_by_kind="user").update(
        agent_oid=models.F("initiated_by_id")
    )


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0007_alter_portalevent_kind"),
        ("mfa", "0001_initial"),
    ]

    operations = [
        migrations.AddField(
            model_name="directoryauditrecord",
            name="agent_oid",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.RunPython(backfill_agent_oid, migrations.RunPython.noop, elidable=True),
        migrations.AddIndex(
            model_name="directoryauditrecord",
            index=models.Index(
                fields=["agent_oid", "activity_at"], name="audit_dar_agent_time_idx"
            ),
        ),
    ]
