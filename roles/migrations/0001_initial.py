"""RoleChangeRequest and RoleHolderSnapshot, moved here from accounts (its 0003).

State only: the tables ``accounts_rolechangerequest`` and ``accounts_roleholdersnapshot`` (and
their indexes) were made by accounts' 0002 and stay as they are, so an upgrade moves no data and a
fresh database gets them from accounts' 0002 too.
"""

import uuid

import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("accounts", "0003_role_models_to_roles"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="RoleHolderSnapshot",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "state",
                            models.CharField(
                                choices=[
                                    ("pending", "Queued"),
                                    ("running", "Reading Graph"),
                                    ("done", "Done"),
                                    ("failed", "Failed"),
                                ],
                                default="pending",
                                max_length=16,
                            ),
                        ),
                        ("trigger", models.CharField(max_length=16)),
                        (
                            "created_at",
                            models.DateTimeField(db_index=True, default=django.utils.timezone.now),
                        ),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        ("holders", models.JSONField(blank=True, default=dict)),
                        ("error_code", models.CharField(blank=True, max_length=128)),
                        ("error_message", models.TextField(blank=True)),
                        ("error_request_id", models.CharField(blank=True, max_length=64)),
                        (
                            "requested_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "accounts_roleholdersnapshot",
                        "ordering": ("-created_at", "-id"),
                    },
                ),
                migrations.CreateModel(
                    name="RoleChangeRequest",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True,
                                primary_key=True,
                                serialize=False,
                                verbose_name="ID",
                            ),
                        ),
                        (
                            "public_id",
                            models.UUIDField(default=uuid.uuid4, editable=False, unique=True),
                        ),
                        (
                            "change",
                            models.CharField(
                                choices=[("add", "Add a holder"), ("remove", "Remove a holder")],
                                max_length=8,
                            ),
                        ),
                        (
                            "status",
                            models.CharField(
                                choices=[
                                    ("awaiting_approval", "Awaiting approval"),
                                    ("pending", "Queued"),
                                    ("running", "Running"),
                                    ("succeeded", "Succeeded"),
                                    ("partially_succeeded", "Partially succeeded"),
                                    ("failed", "Failed"),
                                    ("rejected", "Rejected"),
                                    ("cancelled", "Cancelled"),
                                    ("expired", "Expired"),
                                ],
                                db_index=True,
                                max_length=32,
                            ),
                        ),
                        ("role_template_id", models.CharField(max_length=64)),
                        ("role_name", models.CharField(max_length=128)),
                        ("principal_id", models.CharField(db_index=True, max_length=64)),
                        (
                            "principal_type",
                            models.CharField(
                                choices=[("user", "Person"), ("group", "Role-assignable group")],
                                max_length=8,
                            ),
                        ),
                        ("principal_name", models.CharField(max_length=256)),
                        ("principal_upn", models.CharField(blank=True, max_length=320)),
                        (
                            "hold_kind",
                            models.CharField(
                                choices=[
                                    ("active_permanent", "Active, permanent"),
                                    ("active_until", "Active until a date"),
                                    ("eligible_until", "Eligible (PIM) until a date"),
                                    ("active", "Active assignment"),
                                    ("eligible", "PIM eligibility"),
                                ],
                                max_length=24,
                            ),
                        ),
                        ("ends_at", models.DateTimeField(blank=True, null=True)),
                        ("assignment_id", models.CharField(blank=True, max_length=256)),
                        ("justification", models.TextField()),
                        ("ticket", models.CharField(blank=True, max_length=64)),
                        ("requester_name", models.CharField(max_length=256)),
                        ("needs_approval", models.BooleanField(default=False)),
                        ("decided_by_name", models.CharField(blank=True, max_length=256)),
                        ("decision_comment", models.TextField(blank=True)),
                        ("decided_at", models.DateTimeField(blank=True, null=True)),
                        ("idempotency_key", models.CharField(max_length=64, unique=True)),
                        (
                            "open_slot",
                            models.CharField(blank=True, max_length=160, null=True, unique=True),
                        ),
                        (
                            "created_at",
                            models.DateTimeField(db_index=True, default=django.utils.timezone.now),
                        ),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        ("enqueued_at", models.DateTimeField(blank=True, null=True)),
                        ("started_at", models.DateTimeField(blank=True, null=True)),
                        ("finished_at", models.DateTimeField(blank=True, null=True)),
                        ("heartbeat_at", models.DateTimeField(blank=True, null=True)),
                        ("attempts", models.PositiveIntegerField(default=0)),
                        ("steps", models.JSONField(blank=True, default=list)),
                        ("pending_writes", models.JSONField(blank=True, default=dict)),
                        ("graph_object_id", models.CharField(blank=True, max_length=256)),
                        ("error_code", models.CharField(blank=True, max_length=128)),
                        ("error_message", models.TextField(blank=True)),
                        ("error_request_id", models.CharField(blank=True, max_length=64)),
                        ("entra_event_ids", models.JSONField(blank=True, default=list)),
                        (
                            "decided_by",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="decided_role_change_requests",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                        (
                            "requester",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.PROTECT,
                                related_name="role_change_requests",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "accounts_rolechangerequest",
                        "ordering": ("-created_at", "-id"),
                        "indexes": [
                            models.Index(
                                fields=["status", "created_at"],
                                name="accounts_ro_status_9a8a06_idx",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
