"""Loan Prediction: schema, feature pipeline, data, model store and serving helpers."""
