"""The audit log is append-only in the database too, not only in the model."""

from django.db import migrations

POSTGRESQL = """
CREATE FUNCTION gifting_giftevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'gift events are append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER gifting_giftevent_append_only
    BEFORE UPDATE OR DELETE ON gifting_giftevent
    FOR EACH ROW EXECUTE FUNCTION gifting_giftevent_append_only();
"""
POSTGRESQL_REVERSE = """
DROP TRIGGER gifting_giftevent_append_only ON gifting_giftevent;
DROP FUNCTION gifting_giftevent_append_only();
"""
# SQLite (development only) guards updates alone: Django empties SQLite tables
# with DELETE (PostgreSQL with TRUNCATE, which row triggers do not see).
SQLITE = [
    "CREATE TRIGGER gifting_giftevent_no_update BEFORE UPDATE ON gifting_giftevent "
    "BEGIN SELECT RAISE(ABORT, 'gift events are append-only'); END;",
]
SQLITE_REVERSE = ["DROP TRIGGER gifting_giftevent_no_update;"]


def forwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    statements = {"postgresql": [POSTGRESQL], "sqlite": SQLITE}.get(vendor, [])
    for statement in statements:
        schema_editor.execute(statement)


def backwards(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    statements = {"postgresql": [POSTGRESQL_REVERSE], "sqlite": SQLITE_REVERSE}.get(vendor, [])
    for statement in statements:
        schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [("gifting", "0001_initial")]

    operations = [migrations.RunPython(forwards, backwards)]
