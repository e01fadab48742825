"""AWS hooks of the DeepLens pipeline."""
