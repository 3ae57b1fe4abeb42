"""What an operator runs on stored models and prediction logs: the training
report, version listing and comparison, and the drift report."""
