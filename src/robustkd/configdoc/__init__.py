"""The configuration reference, ``config/README.md``, generated from the schema and the configs.

    python -m robustkd.configdoc > config/README.md

Every property of ``config/schema.yaml`` carries a ``description``: what it means and, after
``Source:``, where its paper value comes from. :mod:`~robustkd.configdoc.schema` walks the
schema; :mod:`~robustkd.configdoc.render` reads each key's value from ``config/config.yaml``
(the paper) and from that file merged with ``config/demo.yaml`` (the miniature, merged as
Snakemake merges a ``--configfile`` overlay: :func:`robustkd.config.merge_configs`) and writes
one table per top-level key. ``tests/test_configdoc.py`` fails when a property has no
description, when a value has no source, and when ``config/README.md`` differs from what this
package writes now.
"""

from robustkd.configdoc.render import generate, render, source_for, value_text
from robustkd.configdoc.schema import Key, keys, type_text, undescribed, unsourced

__all__ = [
    "Key",
    "generate",
    "keys",
    "render",
    "source_for",
    "type_text",
    "undescribed",
    "unsourced",
    "value_text",
]
