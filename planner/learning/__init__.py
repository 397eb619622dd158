"""Learning durations: importers, features, baselines, models, evaluation, registry, predictor.

Importing this package is cheap: pandas, numpy, scikit-learn and joblib are imported by
the modules that use them, inside their functions. Import the submodules directly, for
example ``from planner.learning.registry import Registry``.
"""

__all__: list[str] = []
