"""The CRAFT study's table and figures, from the per-seed ``metrics.json`` of every student.

Tables (``results/craft/tables/``, CSV + Markdown + LaTeX + HTML):

- ``craft_table`` (:mod:`~robustkd.craft.report.table`): methods x clean / robust / primary /
  CRAFT-train corruptions / NaN count / cost, mean +- sample std over seeds, with the teacher
  as a reference row. Its columns mix units, so it is rendered there (same long CSV format and
  cell format as :func:`robustkd.report.tables.build_table`, which takes one metric per table).
- ``craft_per_corruption`` and ``craft_per_severity``
  (:mod:`~robustkd.craft.report.breakdowns`): the breakdowns, built by
  :func:`~robustkd.report.tables.build_table` from the per-seed ``eval/{condition}.json``.

Figures (``results/craft/figures/``, PNG + PDF + the CSV of the plotted data), as the paper's:
clean vs robust bars (its Figs. 3-4), pairwise differences (Fig. 5) and the per-corruption and
per-severity comparison (Fig. 6) in :mod:`~robustkd.craft.report.accuracy`; NaN counts
(Fig. 7), cost vs robustness (Fig. 8) and training curves (Fig. 9) in
:mod:`~robustkd.craft.report.training`; the teacher-student alignment heatmap, layers x
severity (Fig. 2), in :mod:`~robustkd.craft.report.alignment`. They share the style, colours
and writer of :mod:`~robustkd.craft.report.drawing`.

:mod:`~robustkd.craft.report.runs` reads every input (:func:`~robustkd.craft.report.runs.load_runs`)
and names methods and corruptions; :func:`robustkd.craft.report.job.report_job` writes it all.
"""
