"""The loan-approval model and its inputs, shared by training, serving and batch scoring.

Grouped by layer, lowest first (docs/layout.md; tests/test_layers.py enforces it):
the contract at the top level (schema, reason_codes, environment); `inputs/` and
`model/`; `explanations/`; the decision path and what every path shares at the top
level (decide, csv_output, data, synthetic); `records/`; and the applications
`serving/`, `batch/` and `operations/`. A module imports its own part and the
layers below, never a layer above, and sibling subpackages never meet.
"""
