"""A model's check constraints evaluated in Python, as the database would: no round trip for a valid row.

Django's full_clean asks the database for each CheckConstraint, a query (and,
inside a transaction, a savepoint and its release) per constraint, compiled
anew each time: the most expensive part of validating a gift. The conditions
are simple lookups on the row's own fields, which Python can evaluate with
SQL's three-valued logic (a comparison with NULL is unknown, and a check
passes unless its condition is false). Whatever this cannot evaluate (an
expression, a related field, an unknown lookup) raises Unsupported, and the
caller asks the database as before. The database still enforces every
constraint on INSERT: this only decides whether to ask it for the errors.
tests/core/test_checks.py compares it with PostgreSQL on generated rows.
"""

import operator
import re

from django.db import models
from django.db.models import Q

COMPARISONS = {"exact": operator.eq, "gt": operator.gt, "gte": operator.ge, "lt": operator.lt, "lte": operator.le}


class Unsupported(Exception):
    """A condition this module does not evaluate; ask the database."""


def violated_checks(instance: models.Model) -> list[models.CheckConstraint]:
    """The instance's model's check constraints whose condition is false for it (unknown passes)."""
    constraints = [c for c in instance._meta.constraints if isinstance(c, models.CheckConstraint)]
    return [c for c in constraints if evaluate(c.condition, instance) is False]


def evaluate(condition: Q, instance: models.Model) -> bool | None:
    """True, False or None (unknown, from a NULL) for `condition` on `instance`'s field values."""
    if condition.connector not in (Q.AND, Q.OR):
        raise Unsupported(f"connector {condition.connector}")
    results = [
        evaluate(child, instance) if isinstance(child, Q) else _lookup(*child, instance) for child in condition.children
    ]
    combined = _all(results) if condition.connector == Q.AND else _any(results)
    return _not(combined) if condition.negated else combined


def _lookup(path: str, expected: object, instance: models.Model) -> bool | None:
    name, _, lookup = path.partition("__")
    lookup = lookup or "exact"
    if isinstance(expected, (models.Expression, models.F)) or lookup not in (*COMPARISONS, "in", "isnull", "regex"):
        raise Unsupported(path)
    field = instance._meta.get_field(name)
    if field.is_relation:
        raise Unsupported(path)
    value = getattr(instance, field.attname)
    if lookup == "isnull":
        return (value is None) == bool(expected)
    if value is None:
        return None
    if lookup in COMPARISONS:
        return COMPARISONS[lookup](value, expected)
    if lookup == "in":
        return value in expected
    return re.search(expected, str(value)) is not None  # regex


def _all(results: list[bool | None]) -> bool | None:
    if False in results:
        return False
    return None if None in results else True


def _any(results: list[bool | None]) -> bool | None:
    if True in results:
        return True
    return None if None in results else False


def _not(result: bool | None) -> bool | None:
    return None if result is None else not result
