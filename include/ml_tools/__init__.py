"""ML tools environment code (mxnet allowed): SSD graphs, the emulator trainer, preview."""
