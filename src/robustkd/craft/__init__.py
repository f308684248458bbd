"""The CRAFT study (paper 004): CIFAR-10 teacher and students under CIFAR-10-C style shift.

Modules: :mod:`~robustkd.craft.models` (CIFAR ResNets), :mod:`~robustkd.corruptions`
(the 15 benchmark corruptions x 5 severities, one module per group),
:mod:`~robustkd.craft.losses` (one module per loss family: logit KD, attention transfer, CRD,
CRAFT), :mod:`~robustkd.craft.tasks` (one training step per method for the shared loop),
:mod:`~robustkd.craft.evaluate` (accuracy suite and alignment), the workflow's jobs
(:mod:`~robustkd.craft.jobs`: the corrupted test set; :mod:`~robustkd.craft.teacher_job`,
:mod:`~robustkd.craft.student_job` and what they share, :mod:`~robustkd.craft.training`),
:mod:`~robustkd.craft.report` (the table and figures, one module per concept) and
:mod:`~robustkd.craft.layout` (output paths; cheap to import).
"""
