"""mlff's export forms (``defectkit.export.rewrites``): none yet."""

from __future__ import annotations


def rewrites():
    return {}
