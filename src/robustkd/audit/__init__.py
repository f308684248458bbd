"""Audit a reported number: walk back from a table cell to the raw data, re-hashing every file.

    robustkd audit results/tables/table1.csv [--cell ROW COL]

The walk (DESIGN.md, "Provenance contract"):

1. the table's ``<table>.provenance.json`` maps each cell to its metrics files, one per seed,
   with their sha256 and the values read; the table's own files are re-hashed;
2. each metrics file leads to the ``provenance.json`` of the job that wrote it (the nearest
   one in its folder or above that lists it among its outputs): the job's outputs and inputs
   are re-hashed against the hashes it recorded;
3. each input (a student, a teacher, a prepared ``manifest.csv``, a raw archive) leads to the
   job that wrote it, recursively, down to the raw data; a prepared dataset's images are
   re-hashed against the sha256 column of its manifest. Files outside ``results/`` (the class
   list, real raw data) are sources: checked against the hash their consumer recorded.

Every link prints its rule, wildcards, seed, code version and the config values it used.
Any file that is missing or whose hash changed is a failure; the audit goes on to show the
whole chain and then names the first failure. Bad input (an unknown table, a missing or
malformed table provenance) raises :class:`AuditError` instead.

Modules: :mod:`~robustkd.audit.records` (the records, the result, reading them),
:mod:`~robustkd.audit.checks` (re-hashing files and finding the job that made one),
:mod:`~robustkd.audit.printer` (the printed chain and closing lines),
:mod:`~robustkd.audit.walker` (the walk from a table or a job down to the raw data) and
:mod:`~robustkd.audit.targets` (what to audit: a table, a file, a folder).
"""

from robustkd.audit.records import AuditError, AuditResult, Problem
from robustkd.audit.targets import audit, find_table_provenance
from robustkd.audit.walker import Auditor

__all__ = [
    "AuditError",
    "AuditResult",
    "Auditor",
    "Problem",
    "audit",
    "find_table_provenance",
]
