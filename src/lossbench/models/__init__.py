"""The study's models: the common head and the three imbalance losses.

Import :mod:`lossbench.models.registry` (configs do it through
``custom_imports``) to register them into MMDetection's ``MODELS``.
"""
