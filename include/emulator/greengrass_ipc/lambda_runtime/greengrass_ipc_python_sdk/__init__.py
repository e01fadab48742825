"""Greengrass V1 core runtime: the HTTP client of the core's IPC server (emulator stand-in)."""
