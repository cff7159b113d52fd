"""Cross-cutting rules shared by every layer of medseg: logging, progress reporting, readable JSON
and worker processes.

This package sits below :mod:`medseg.io` and imports nothing from medseg except
:mod:`medseg.errors`, so any module may use it without creating an import cycle.
"""
