"""Model risk on live decisions: outcomes, overrides, a challenger in shadow."""
