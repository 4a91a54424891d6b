"""Chain the events written before hash chaining existed, oldest first (by created_at, id).

Runs before the PostgreSQL append-only trigger exists (0005), as the only UPDATE the table ever
sees. The historical model's manager is Django's plain one, so the append-only guard of the
real model does not get in the way.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

from audit.chain import CHAIN_SHA256, GENESIS_HASH, event_content, event_hash, normalise_ip


def chain_existing_events(apps: Any, schema_editor: Any) -> None:
    portal_event = apps.get_model("audit", "PortalEvent")
    prev_hash = GENESIS_HASH
    for seq, event in enumerate(
        portal_event.objects.order_by("created_at", "id").iterator(chunk_size=2000), start=1
    ):
        event.seq = seq
        event.prev_hash = prev_hash
        event.source_ip = normalise_ip(event.source_ip)
        # Plain SHA-256: 0011 marks these events chain_version 1 (keying came later).
        event.hash = event_hash(prev_hash, event_content(event), version=CHAIN_SHA256)
        portal_event.objects.filter(pk=event.pk).update(
            seq=event.seq, prev_hash=event.prev_hash, hash=event.hash, source_ip=event.source_ip
        )
        prev_hash = event.hash


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0003_portalevent_chain_fields_directoryauditrecord"),
    ]

    operations = [
        migrations.RunPython(chain_existing_events, migrations.RunPython.noop, elidable=False),
    ]
