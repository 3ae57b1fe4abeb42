"""Scoring outside the HTTP service: offline CSV scoring, the Spark job, and the
CSV answer format they share with the service's /predict_csv."""
