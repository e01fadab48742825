"""The embedded AWS emulator (moto server plus extension) and the generated sample dataset."""
