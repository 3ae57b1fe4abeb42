"""Why a rejection was a rejection: exact Shapley attributions of the fitted
trees (tree_shapley.py) turned into adverse-action reasons against a recorded
reference population (reasons.py)."""
