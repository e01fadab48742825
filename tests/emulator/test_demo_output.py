"""The demo's terminal shows one line per finished task and progress while a trigger waits, and at the
end what watching the simulated DeepLens showed."""

import io
import json

import pytest

from deeplens_pipeline.device_watch import WatchSummary, parse_payload
from emulator.demo_output import TaskProgress, format_device_watch

RUN = "manual__2026-11-26T03:19:44.121838+00:00"
LOG = [
    "2026 [info     ] [DAG TEST] starting task_id=check_params map_index=-1 [airflow.sdk]",
    f"2026 [info     ] [DAG TEST] running task <TaskInstance: dag.check_params {RUN} [SCHEDULED]>",
    "2026 [info     ] [DAG TEST] end task task_id=check_params map_index=-1 [airflow.sdk]",
    "2026 [info     ] [DAG TEST] starting task_id=label_images map_index=-1 [airflow.sdk]",
    f"2026 [info     ] [DAG TEST] running task <TaskInstance: dag.label_images {RUN} [SCHEDULED]>",
    "2026 [info     ] [DAG TEST] running trigger in line [airflow.sdk]",
    "2026 [info     ] Label Studio project 1: 3 of 16 task(s) answered "
    "[deeplens_pipeline.triggers.label_studio.LabelStudioTasksTrigger] loc=label_studio.py:94",
]


def test_one_line_per_finished_task_and_the_trigger_s_status_while_waiting(tmp_path):
    out = io.StringIO()
    states = []

    def state(task, run, index):
        states.append((task, run, index))
        return "success"

    progress = TaskProgress(tmp_path / "log", out, state, interval=10)
    for second, line in enumerate(LOG):
        progress.feed(line, float(second))
    progress.tick(30.0)
    progress.feed(
        "2026 [info     ] [DAG TEST] end task task_id=label_images map_index=-1 [airflow.sdk]", 40.0
    )
    assert states == [("check_params", RUN, -1), ("label_images", RUN, -1)]
    assert progress.lines[0].split() == ["check_params", "success", "2.0", "s"]
    assert (
        progress.lines[1]
        == "  … label_images waiting (27 s): Label Studio project 1: 3 of 16 task(s) answered"
    )
    assert progress.lines[2].split() == ["label_images", "success", "37.0", "s"]
    assert len(progress.lines) == 3


def test_device_section_counts_frames_and_detections_per_class_and_names_the_frame() -> None:
    summary = WatchSummary(frames=42, example_frame="/work/main/.demo/device-frames/frame_000041.jpg")
    box = {"xmin": 10, "ymin": 20, "xmax": 110, "ymax": 90}
    for payload in (
        {"blue_box": 0.91, "detections": [{"label": "blue_box", "prob": 0.91, **box}]},
        {
            "blue_box": 0.55,
            "yellow_box": 0.73,
            "detections": [
                {"label": "yellow_box", "prob": 0.73, **box},
                {"label": "blue_box", "prob": 0.55, **box},
            ],
        },
        {},
        {"error": "boom", "stage": "model", "where": "x.py:1"},
    ):
        summary.add(parse_payload(json.dumps(payload)))
    text = format_device_watch({**summary.as_dict(), "seconds": 8.0})
    assert text.splitlines() == [
        "Simulated DeepLens (watched 8 s)",
        "  frames seen: 42",
        "  messages: 4 (3 detection results, 1 empty, 1 errors)",
        "  detections per class:",
        "    blue_box: 2 (best 91.0%)",
        "    yellow_box: 1 (best 73.0%)",
        "  annotated frame: /work/main/.demo/device-frames/frame_000041.jpg",
    ]


def test_device_section_says_when_nothing_was_seen() -> None:
    text = format_device_watch(WatchSummary().as_dict())
    assert "  frames seen: 0" in text.splitlines()
    assert "  detections per class: none" in text.splitlines()
    assert text.endswith("annotated frame: none (no frame was streamed)")


def test_an_untrained_models_detections_are_called_noise():
    from deeplens_pipeline.device_watch import WatchSummary

    assert "noise" in format_device_watch(WatchSummary().as_dict(), untrained=True)
    assert "noise" not in format_device_watch(WatchSummary().as_dict())


def test_a_work_folder_with_other_content_is_refused_and_kept(tmp_path):
    from emulator.demo import WORK_MARKER, fresh_work_dir

    home = tmp_path / "home"
    home.mkdir()
    (home / "thesis.tex").write_text("years of work")
    with pytest.raises(SystemExit, match="not empty and not a work folder"):
        fresh_work_dir(home)
    assert (home / "thesis.tex").exists()
    work = fresh_work_dir(tmp_path / "demo")
    (work / "old-run.log").write_text("x")
    assert fresh_work_dir(work) == work and sorted(p.name for p in work.iterdir()) == [WORK_MARKER]
