"""The model and its arithmetic: the derived features and the pipeline
(features.py), the hyperparameter search (search.py), the vectorised evaluation
of the fitted trees (tree_ensemble.py, split_codes.py) and the model store
(store.py)."""
