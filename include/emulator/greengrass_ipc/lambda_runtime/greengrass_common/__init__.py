"""Greengrass V1 core runtime: shared settings of a Lambda function process (emulator stand-in)."""
