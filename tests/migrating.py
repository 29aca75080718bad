"""Moving the test database between migration states, for tests of data migrations."""

from django.apps.registry import Apps
from django.db import connection
from django.db.migrations.executor import MigrationExecutor


def migrate(targets=()) -> Apps:
    """Migrate the named apps to `targets` (default: their latest), every other app to its latest; the models then."""
    executor = MigrationExecutor(connection)
    ours = {app for app, _ in targets}
    others = [node for node in executor.loader.graph.leaf_nodes() if node[0] not in ours]
    executor.migrate([*targets, *others])
    executor.loader.build_graph()
    return executor.loader.project_state([*targets, *others]).apps
