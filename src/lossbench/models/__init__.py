"""The study's models: the common head and the three imbalance losses, registered into
MMDetection's ``MODELS`` by :mod:`lossbench.models.registry` (configs import it)."""
