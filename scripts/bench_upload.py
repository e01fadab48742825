"""Benchmark: uploading many small JPEGs to the emulator's S3.

Starts a moto server (a separate process on 127.0.0.1), writes 1,000 small JPEGs and prints files per
second for

  (1) sequential ``put_object``, one file after the other;
  (2) ours: ``deeplens_pipeline.images.store.sync_files`` (checksum look-ups, then boto3's transfer
      manager with bounded concurrency and retries);
  (3) ``aws s3 sync`` (the awscli command line tool), when it is installed;

with the ratios, then runs (2) and (3) a second time to show that an unchanged folder uploads 0 bytes.

awscli cannot be installed under the project's constraints (awscli 1.45.56, the release built on
botocore 1.43.56, requires rsa<4.8 and the Airflow 3.3.1 constraints pin rsa 4.9.1), so it goes in a
throwaway virtualenv: ``--install-awscli /tmp/awscli-venv`` creates one with uv.

    PYTHONPATH=plugins .venv/bin/python scripts/bench_upload.py [--count 1000] [--aws PATH]
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import boto3
from botocore.config import Config
from PIL import Image, ImageDraw

from deeplens_pipeline.images.preprocess import sha256_file
from deeplens_pipeline.images.store import META_SHA256, Upload, list_keys, sync_files

AWSCLI = "awscli==1.45.56"  # the release on botocore 1.43.56, the project's botocore


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_moto(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit("the moto server did not start")


def small_jpegs(folder: Path, count: int) -> list[Path]:
    """``count`` distinct 96x96 JPEGs (~2-3 KB each)."""
    folder.mkdir(parents=True)
    base = Image.linear_gradient("L").resize((96, 96)).convert("RGB")
    paths = []
    for i in range(count):
        im = base.copy()
        ImageDraw.Draw(im).text((8, 40), f"{i:05d}", fill=(255, (i * 7) % 256, (i * 13) % 256))
        path = folder / f"img_{i:05d}.jpg"
        im.save(path, quality=85)
        paths.append(path)
    return paths


def install_awscli(venv: Path) -> Path:
    """A throwaway virtualenv with awscli (uv from this interpreter's environment)."""
    uv = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    aws = venv / "bin" / "aws"
    if not aws.exists():
        subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
        subprocess.run(
            [uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), AWSCLI], check=True
        )
    return aws


def rate(label: str, count: int, seconds: float) -> float:
    value = count / seconds
    print(f"{label:<52} {value:8.1f} files/s  ({seconds:.2f} s)", flush=True)
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16, help="our parallel uploads (default 16)")
    parser.add_argument("--aws", default=shutil.which("aws"), help="the aws executable (default: on PATH)")
    parser.add_argument(
        "--install-awscli", type=Path, metavar="VENV", help=f"create VENV with {AWSCLI} and use it"
    )
    args = parser.parse_args(argv)
    aws = str(install_awscli(args.install_awscli)) if args.install_awscli else args.aws

    os.environ.setdefault("AWS_ACCESS_KEY_ID", "bench")
    os.environ.setdefault("AWS_SECRET_ACCESS_KEY", "bench")
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    port = free_port()
    server = start_moto(port)
    url = f"http://127.0.0.1:{port}"
    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    try:
        paths = small_jpegs(work / "jpegs", args.count)
        total = sum(p.stat().st_size for p in paths)
        print(f"{len(paths)} JPEGs, {total / 1e6:.1f} MB, to a moto server at {url}")
        config = Config(
            retries={"mode": "standard", "max_attempts": 5}, max_pool_connections=args.concurrency + 4
        )
        s3 = boto3.client("s3", endpoint_url=url, config=config)
        for bucket in ("deeplens-bench-seq", "deeplens-bench-ours", "deeplens-bench-cli"):
            s3.create_bucket(Bucket=bucket)

        start = time.perf_counter()
        for p in paths:
            s3.put_object(
                Bucket="deeplens-bench-seq",
                Key=f"input/{p.name}",
                Body=p.read_bytes(),
                ContentType="image/jpeg",
            )
        sequential = rate("(1) sequential put_object", len(paths), time.perf_counter() - start)

        uploads = [
            Upload(path=p, key=f"input/{p.name}", metadata={META_SHA256: sha256_file(p)}) for p in paths
        ]  # the stage hashes its sources anyway
        start = time.perf_counter()
        report, skipped = sync_files(s3, "deeplens-bench-ours", uploads, max_concurrency=args.concurrency)
        ours = rate(
            f"(2) ours (sync_files, {args.concurrency} threads)", len(paths), time.perf_counter() - start
        )
        assert len(report.uploaded) == len(paths) and not report.failed and not skipped
        assert len(list_keys(s3, "deeplens-bench-ours", "input/")) == len(paths)

        cli = None
        cli_command = None
        if aws and Path(aws).exists():
            cli_command = [
                aws,
                "s3",
                "sync",
                str(work / "jpegs"),
                "s3://deeplens-bench-cli/input/",
                "--endpoint-url",
                url,
                "--no-progress",
            ]
            start = time.perf_counter()
            done = subprocess.run(cli_command, capture_output=True, text=True, check=True)
            cli = rate("(3) aws s3 sync (10 threads, its default)", len(paths), time.perf_counter() - start)
            assert done.stdout.count("upload:") == len(paths)
        else:
            print("(3) aws s3 sync: skipped, no aws executable (use --install-awscli /tmp/awscli-venv)")

        print(f"ours / sequential = {ours / sequential:.2f}x", end="")
        print(f"   ours / aws s3 sync = {ours / cli:.2f}x" if cli else "")

        start = time.perf_counter()
        report, skipped = sync_files(s3, "deeplens-bench-ours", uploads, max_concurrency=args.concurrency)
        print(
            f"second run, ours: {len(report.uploaded)} files, {report.bytes} bytes uploaded, "
            f"{len(skipped)} unchanged ({time.perf_counter() - start:.2f} s)"
        )
        if cli_command:
            start = time.perf_counter()
            done = subprocess.run(cli_command, capture_output=True, text=True, check=True)
            print(
                f"second run, aws s3 sync: {done.stdout.count('upload:')} files uploaded "
                f"({time.perf_counter() - start:.2f} s)"
            )
        return 0
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
