"""PostgreSQL: no role but the table's owner may UPDATE, DELETE, TRUNCATE or add a TRIGGER to
``audit_portalevent``.

Migrations run as the owner of the tables; the web and worker processes connect as an
application role (README, "Production": ``docker/postgres/initdb/10-app-role.sh`` creates it in
docker compose) that reads and writes every table but may only SELECT and INSERT events. This
migration takes the four rights away from every other role holding them on the table, PUBLIC
included (typically the application role, which ``ALTER DEFAULT PRIVILEGES`` gave them when
0001 created the table). With the trigger of 0006 and the keyed chain (0011), a compromised web
or worker process can add events but neither change nor remove one, nor switch the trigger off.

For an application role created after this migration ran, revoke the same rights by hand (the
README gives the statement), or run ``manage.py migrate audit 0011`` and ``migrate`` again as
the owner. Reversing this migration grants nothing back. SQLite has no roles: nothing to do.
"""

from __future__ import annotations

from typing import Any

from django.db import migrations

TABLE = "audit_portalevent"
REFUSED_PRIVILEGES = ("UPDATE", "DELETE", "TRUNCATE", "TRIGGER")

# Every role other than the owner that holds one of the refused rights on the table, quoted as
# an identifier (PUBLIC is grantee 0).
_HOLDERS_SQL = """
SELECT DISTINCT CASE WHEN acl.grantee = 0 THEN 'PUBLIC'
                     ELSE quote_ident(pg_get_userbyid(acl.grantee)) END
FROM pg_class AS c, aclexplode(c.relacl) AS acl
WHERE c.oid = to_regclass(%s)
  AND acl.grantee <> c.relowner
  AND acl.privilege_type = ANY(%s)
ORDER BY 1
"""


def refused_privilege_holders(connection: Any) -> list[str]:
    """The roles (quoted identifiers, or PUBLIC) that may still change or empty the events
    table. Empty on SQLite."""
    if connection.vendor != "postgresql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(_HOLDERS_SQL, [TABLE, list(REFUSED_PRIVILEGES)])
        return [str(row[0]) for row in cursor.fetchall()]


def revoke_refused_privileges(connection: Any) -> list[str]:
    """Revoke UPDATE, DELETE, TRUNCATE and TRIGGER on the events table from every role but its
    owner; return the roles it was revoked from. Run as the owner (or a superuser)."""
    holders = refused_privilege_holders(connection)
    with connection.cursor() as cursor:
        for holder in holders:
            cursor.execute(f"REVOKE {', '.join(REFUSED_PRIVILEGES)} ON {TABLE} FROM {holder}")
    return holders


def forwards(apps: Any, schema_editor: Any) -> None:
    revoke_refused_privileges(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("audit", "0011_portalevent_chain_version"),
    ]

    operations = [
        migrations.RunPython(forwards, migrations.RunPython.noop, elidable=False),
    ]
