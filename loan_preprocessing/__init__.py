"""The loan-approval model and its inputs, shared by training, serving and batch scoring.

Top level: the schema, features, trees, decision rule and model store. Subpackages
say who else may use a module: `serving/` only the HTTP service, `operations/`
what an operator runs on stored models and logs, `batch/` scoring outside the
service. A subpackage imports from the top level, never from a sibling.
"""
