"""The demo's terminal shows one line per finished task and progress while a trigger waits."""

import io

from emulator.demo_output import TaskProgress

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
