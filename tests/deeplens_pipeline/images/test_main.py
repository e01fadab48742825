"""The command line (``python -m deeplens_pipeline.images``)."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.progress import Progress

from deeplens_pipeline.images.__main__ import RichProgress, main

REPO = Path(__file__).resolve().parents[3]


def cli(*args: str) -> int:
    return main([*args, "--no-progress"])


def test_upload_then_rerun_uploads_nothing(photos, make, moto_endpoint, bucket, s3, capsys):
    folder = photos(3)
    (folder / "bad.png").write_bytes(b"")
    args = [
        str(folder),
        "--bucket",
        bucket,
        "--endpoint-url",
        moto_endpoint,
        "--size",
        "300",
        "--processes",
        "1",
    ]
    assert cli(*args, "--json", "--max-reject-share", "0.5") == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["uploaded"], first["rejected"], len(first["images"])) == (3, 1, 3)
    assert first["rejects_report"] == f"s3://{bucket}/reports/cli/rejects.csv"
    assert cli(*args, "--max-reject-share", "0.5") == 0
    out = capsys.readouterr().out
    assert "uploaded: 0\n" in out and "unchanged: 3\n" in out and "processed: 0\n" in out
    assert s3.head_object(Bucket=bucket, Key="input/photo_00.jpg")["ContentType"] == "image/jpeg"


def test_a_rerun_lists_the_bucket_once_however_many_shards(photos, make, moto_endpoint, bucket, monkeypatch):
    """Before, each shard listed the whole input prefix and read the whole ledger: 4 shards gave 5
    listings and 6 ledger reads; now the plan lists once and collect once, whatever the shards."""
    from collections import Counter

    from deeplens_pipeline.images import __main__ as cli_mod

    folder = photos(4)
    requests: Counter[str] = Counter()
    make_client = cli_mod.s3_client

    def counted(*args, **kwargs):
        client = make_client(*args, **kwargs)
        client.meta.events.register("before-call.s3.*", lambda model, **_: requests.update([model.name]))
        return client

    monkeypatch.setattr(cli_mod, "s3_client", counted)
    args = [str(folder), "--bucket", bucket, "--endpoint-url", moto_endpoint, "--size", "300"]
    assert cli(*args, "--processes", "1", "--shard-size", "1") == 0
    requests.clear()
    assert cli(*args, "--processes", "1", "--shard-size", "1") == 0
    assert requests["ListObjectsV2"] == 2  # the plan's survey and collect's check
    assert requests["GetObject"] == 3  # the ledger: the survey, the archive check, the compare-on-write
    assert requests["HeadObject"] == requests["PutObject"] == 0


def test_local_links_out_of_the_folder_are_rejected_in_the_preview_too(photos, tmp_path, capsys):
    folder = photos(1)
    (folder / "escape.jpg").symlink_to(folder / ".." / "src" / ".." / ".." / "x.jpg")
    (folder / "README").write_text("notes")
    out = tmp_path / "preview"
    assert cli(str(folder), "--out-dir", str(out), "--processes", "1", "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["images"], summary["rejected"]) == (1, 1)
    rows = list(csv.reader((out / "rejects.csv").open()))
    assert rows[1][0] == "escape.jpg" and rows[1][1].startswith("outside-source: a symbolic link")


def test_failure_and_bad_arguments_set_the_exit_status(photos, moto_endpoint, bucket, capsys):
    folder = photos(1)
    (folder / "a.jpg").write_text("no")
    assert cli(str(folder), "--bucket", bucket, "--endpoint-url", moto_endpoint, "--processes", "1") == 1
    assert "failed: 1 of 2 files rejected" in capsys.readouterr().err
    assert cli(str(folder), "--bucket", "my-bucket") == 2
    assert "--bucket must begin with 'deeplens-'" in capsys.readouterr().err
    assert cli(str(folder), "--out-dir", str(folder.parent / "o"), "--pad-colour", "nope") == 2


def test_preview_into_a_folder(photos, tmp_path, capsys):
    folder = photos(2)
    (folder / "x.gif").write_text("GIF89a but not really")
    out = tmp_path / "preview"
    assert cli(str(folder), "--out-dir", str(out), "--size", "480", "--mode", "crop", "--processes", "1") == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "photo_00.jpg",
        "photo_01.jpg",
        "rejects.csv",
        "transforms.jsonl",
    ]
    transforms = [json.loads(line) for line in (out / "transforms.jsonl").read_text().splitlines()]
    assert transforms[0]["transform"]["size"] == 480 and transforms[0]["transform"]["dx"] < 0
    rows = list(csv.reader((out / "rejects.csv").open()))
    assert rows == [["file", "reason"], ["x.gif", rows[1][1]]] and rows[1][1].startswith("not-an-image")


def test_rich_progress_bar_follows_the_stages():
    bar = Progress(console=Console(file=io.StringIO(), force_terminal=False))
    progress = RichProgress(bar)
    with bar:
        progress("preprocess", 0, 4)
        for done in range(1, 5):
            progress("preprocess", done, 4)
        progress("upload", 0, 2)
        progress("upload", 1, 2)
    tasks = {t.description: (t.completed, t.total) for t in bar.tasks}
    assert tasks == {"preprocess": (4, 4), "upload": (1, 2)}


def test_module_entry_point_prints_help():
    env = dict(os.environ, PYTHONPATH=str(REPO / "plugins"))
    done = subprocess.run(
        [sys.executable, "-m", "deeplens_pipeline.images", "--help"],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert "--bucket" in done.stdout and "--out-dir" in done.stdout
