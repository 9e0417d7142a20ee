"""The study's models: the common head and the imbalance losses (one per family of
:mod:`lossbench.families`), registered into
MMDetection's ``MODELS`` by :mod:`lossbench.models.registry` (configs import it)."""
