"""The CRAFT study (paper 004): CIFAR-10 teacher and students under CIFAR-10-C style shift.

Modules: :mod:`~robustkd.craft.models` (CIFAR ResNets), :mod:`~robustkd.craft.corruptions`
(the 15 benchmark corruptions x 5 severities), :mod:`~robustkd.craft.losses` (LogitKD,
attention transfer, CRD, CRAFT), :mod:`~robustkd.craft.tasks` (one training step per method for
the shared loop), :mod:`~robustkd.craft.evaluate`, :mod:`~robustkd.craft.jobs` (the workflow's
jobs), :mod:`~robustkd.craft.report` (the table and figures, a package) and :mod:`~robustkd.craft.layout`
(output paths; cheap to import).
"""
