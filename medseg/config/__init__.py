"""Configuration: the typed schemas of every config file, plan and run spec, and the one
mechanism that validates them (:mod:`medseg.config.validation`).

* :mod:`medseg.config.validation`: :func:`from_dict`, :func:`to_dict`, :class:`Section` and the
  field helpers (:func:`setting`, :func:`bounded`, :func:`span`, :func:`optional`, ...).
* :mod:`medseg.config.plan`: the dataset plan (``plan.json``): :class:`~medseg.config.plan.Plan`,
  its ``preprocessing`` section and network configurations, and the network defaults.
* :mod:`medseg.config.run_spec`: the training config (``data``, ``model``, ``loss``, ``optim``,
  ``train``, ``validation``, ``postprocess``) and what a checkpoint records about its run.

These modules import neither torch nor any other medseg layer above :mod:`medseg.io`, so
training, inference and the command line share them without importing one another.
"""

from medseg.config.validation import (
    Section,
    bounded,
    fraction,
    from_dict,
    load_yaml,
    optional,
    positive,
    required,
    setting,
    span,
    to_dict,
)

__all__ = [
    "Section",
    "bounded",
    "fraction",
    "from_dict",
    "load_yaml",
    "optional",
    "positive",
    "required",
    "setting",
    "span",
    "to_dict",
]
