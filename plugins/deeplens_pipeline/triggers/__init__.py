"""Deferral triggers of the DeepLens pipeline."""
