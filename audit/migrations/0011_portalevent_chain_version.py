"""Key the hash chain: ``PortalEvent.chain_version`` records how each event's hash was made.

Every event already in the table keeps its plain SHA-256 hash and gets ``chain_version = 1``:
re-keying them is not possible here (a migration may run without the key, and rewriting the
hashes would need an UPDATE of every row, which the append-only trigger refuses and which would
erase exactly what the old hashes prove). From then on every event is written with version 2,
HMAC-SHA256 with ``AUDIT_CHAIN_KEY`` (audit.chain), and the column's database default is 2 too.

``manage.py audit_verify`` checks version 1 events with SHA-256 and version 2 events with the
key; an unkeyed event after a keyed one is reported as a downgrade, and so is an unkeyed event at
or after the ``keyed_from`` sequence the anchors recorded (audit.anchors). Run
``manage.py audit_anchor`` once right after this migration so that the old events' head and the
point where keying starts are recorded outside the database.

On PostgreSQL the column is added with a constant default (no table rewrite, no UPDATE: the
trigger of 0006 does not fire); on SQLite Django rebuilds the table.
"""

from __future__ import annotations

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0010_alter_portalevent_kind"),
    ]

    operations = [
        # The events written so far: plain SHA-256 (audit.chain.CHAIN_SHA256).
        migrations.AddField(
            model_name="portalevent",
            name="chain_version",
            field=models.PositiveSmallIntegerField(default=1),
            preserve_default=False,
        ),
        # Every event from now on: HMAC-SHA256 (audit.chain.CHAIN_HMAC).
        migrations.AlterField(
            model_name="portalevent",
            name="chain_version",
            field=models.PositiveSmallIntegerField(db_default=2, default=2),
        ),
    ]
