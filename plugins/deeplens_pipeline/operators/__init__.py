"""Airflow operators of the DeepLens pipeline."""
