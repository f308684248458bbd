"""The style sheet of the HTML pages: the tables' and the report's.

Shared by :mod:`robustkd.report.tables.render` and :mod:`robustkd.report.pages`, in a module of
its own without pandas: the report's page jobs import it, not the tables package.
"""

__all__ = ["HTML_STYLE"]

HTML_STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.2em; color: #222; }
caption { font-weight: bold; text-align: left; padding-bottom: 0.4em; }
table { border-collapse: collapse; margin-bottom: 0.6em; }
th, td { padding: 0.25em 0.7em; border-bottom: 1px solid #ccc; text-align: center; }
td { white-space: nowrap; }
th:first-child, td:first-child { text-align: left; white-space: normal; }
thead th { border-bottom: 2px solid #444; }
ul { font-size: 0.9em; color: #444; padding-left: 1.2em; }
p.note { font-size: 0.9em; color: #444; max-width: 60em; }
"""
