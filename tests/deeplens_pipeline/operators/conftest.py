"""Fixtures shared by the operator tests."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest


@pytest.fixture
def empty_bucket(emulator: Any) -> Iterator[Callable[[str], Any]]:
    """Make a bucket on the emulator (``empty_bucket(name)`` returns an S3 client); emptied and
    deleted after the test."""
    client = boto3.client("s3", endpoint_url=emulator.url, region_name="us-east-1")
    made: list[str] = []

    def make(name: str) -> Any:
        client.create_bucket(Bucket=name)
        made.append(name)
        return client

    yield make
    for name in made:
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            for item in page.get("Contents", []):
                client.delete_object(Bucket=name, Key=item["Key"])
        client.delete_bucket(Bucket=name)
