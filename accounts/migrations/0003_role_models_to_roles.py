"""RoleChangeRequest and RoleHolderSnapshot move to the roles app (roles/migrations/0001).

State only: the tables stay as they are (the models name them with ``db_table``), so an upgrade
moves no data.
"""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_role_administration"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="RoleChangeRequest"),
                migrations.DeleteModel(name="RoleHolderSnapshot"),
            ],
            database_operations=[],
        ),
    ]
