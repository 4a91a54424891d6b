"""PostgreSQL: a trigger that rejects UPDATE and DELETE on audit_portalevent.

This is the database's half of the append-only rule (the model refuses too). It is installed
only on PostgreSQL; on SQLite the model guard is the only protection, and anyone who can write
the database file can change rows: ``manage.py audit_verify`` then reports the broken chain.

TRUNCATE is left alone on purpose: Django's ``flush`` (and so the test runner between
transactional tests) empties tables with TRUNCATE, and a table owner who truncates the log can
equally drop the trigger. The trigger guards against the application and ordinary SQL sessions,
the hash chain against everyone else.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

TRIGGER_NAME = "audit_portalevent_append_only"
FUNCTION_NAME = "audit_portalevent_refuse_change"

INSTALL_SQL = f"""
CREATE OR REPLACE FUNCTION {FUNCTION_NAME}() RETURNS trigger AS $$
BEGIN
    -- No percent sign anywhere here: the driver parses this text for placeholders.
    RAISE EXCEPTION USING
        MESSAGE = 'audit_portalevent is append-only: ' || TG_OP || ' refused',
        ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS {TRIGGER_NAME} ON audit_portalevent;
CREATE TRIGGER {TRIGGER_NAME}
    BEFORE UPDATE OR DELETE ON audit_portalevent
    FOR EACH ROW EXECUTE FUNCTION {FUNCTION_NAME}();
"""

REMOVE_SQL = f"""
DROP TRIGGER IF EXISTS {TRIGGER_NAME} ON audit_portalevent;
DROP FUNCTION IF EXISTS {FUNCTION_NAME}();
"""


def install_trigger(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(INSTALL_SQL)


def remove_trigger(apps: Any, schema_editor: Any) -> None:
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(REMOVE_SQL)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0005_portalevent_chain_required"),
    ]

    operations = [
        migrations.RunPython(install_trigger, remove_trigger, elidable=False),
    ]
