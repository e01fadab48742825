"""The real Label Studio server (``.venv-ls``) against the emulator's S3, and the simulated annotator."""

from __future__ import annotations

import io
import json
import time
import uuid

import boto3
import pytest
import requests
from label_studio_sdk import LabelStudio
from label_studio_sdk.core.api_error import ApiError
from PIL import Image

from emulator import label_studio_server
from emulator.extension.groundtruth import load_answer_keys
from emulator.label_studio_annotator import (
    AnnotatorThread,
    annotate_pending,
    correct_predictions,
    parse_label_config,
    rectangle_results,
)
from emulator.label_studio_server import LabelStudioNotInstalled

REGION = "us-east-1"
CLASSES = ("red", "blue")
LABEL_CONFIG = (
    '<View><Image name="image" value="$image"/><RectangleLabels name="label" toName="image">'
    + "".join(f'<Label value="{c}"/>' for c in CLASSES)
    + "</RectangleLabels></View>"
)
# A 600x400 photo letterboxed into 300x300: scale 0.5, 50 px of padding above and below.
TRANSFORM = {"scale": 0.5, "dx": 0, "dy": 50, "size": 300}
ANSWER_KEY = {
    "classes": ["red", "blue", "green"],
    "images": {
        "photo.jpg": {
            "width": 600,
            "height": 400,
            "objects": [
                {"label": "red", "left": 60, "top": 40, "width": 120, "height": 80},
                {"label": "blue", "left": 300, "top": 200, "width": 200, "height": 100},
                {"label": "green", "left": 0, "top": 0, "width": 50, "height": 50},  # not a project class
            ],
        }
    },
}
# Those boxes in the prepared image, in percent of its 300x300 pixels.
EXPECTED = [
    ("red", {"x": 10.0, "y": 70 / 3, "width": 20.0, "height": 40 / 3}),
    ("blue", {"x": 50.0, "y": 50.0, "width": 100 / 3, "height": 50 / 3}),
]


def _jpeg(size: tuple[int, int] = (300, 300)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buffer, format="JPEG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def s3(emulator):
    return boto3.client("s3", endpoint_url=emulator.url, region_name=REGION)


@pytest.fixture(scope="module")
def bucket(s3):
    """A bucket of prepared images, as the upload stage leaves them (with their metadata)."""
    name = f"deeplens-ls-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=name)
    return name


def _put_image(s3, bucket: str, key: str, source: str = "photo.jpg") -> bytes:
    body = _jpeg()
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=body,
        ContentType="image/jpeg",
        Metadata={"deeplens-source": source, "deeplens-transform": json.dumps(TRANSFORM)},
    )
    return body


@pytest.fixture(scope="module")
def answers(tmp_path_factory) -> dict:
    path = tmp_path_factory.mktemp("ls-answers") / "answer_key.json"
    path.write_text(json.dumps(ANSWER_KEY))
    return load_answer_keys((path,))


@pytest.fixture
def project(label_studio, emulator, s3, bucket):
    """A new project with an S3 source storage on the emulator (presigned URLs, custom endpoint)."""
    client = label_studio.client()
    project = client.projects.create(title=f"deeplens test {uuid.uuid4().hex[:8]}", label_config=LABEL_CONFIG)
    _put_image(s3, bucket, "input/seed.jpg")  # a prefix with no object fails the storage's validation
    storage = client.import_storage.s3.create(
        project=project.id,
        bucket=bucket,
        prefix="input",
        presign=True,
        presign_ttl=15,
        s3endpoint=emulator.url,
        region_name=REGION,
        aws_access_key_id="label-studio",
        aws_secret_access_key="label-studio",
        title="emulator",
    )
    return project, storage


def _import(label_studio, project_id: int, data: list[dict]) -> list[int]:
    response = requests.post(
        f"{label_studio.url}/api/projects/{project_id}/import",
        params={"return_task_ids": "true"},
        headers=label_studio.headers,
        json=data,
        timeout=30,
    )
    assert response.status_code == 201, response.text
    return response.json()["task_ids"]


def _annotations(label_studio, task_id: int) -> list[dict]:
    response = requests.get(
        f"{label_studio.url}/api/tasks/{task_id}/annotations/", headers=label_studio.headers, timeout=30
    )
    response.raise_for_status()
    return response.json()


# --- no server ------------------------------------------------------------------------------


def test_missing_environment_names_make_ls_env(monkeypatch, tmp_path):
    monkeypatch.delenv("LABEL_STUDIO_BIN", raising=False)
    monkeypatch.delenv("LABEL_STUDIO_PYTHON", raising=False)
    monkeypatch.setattr(label_studio_server, "DEFAULT_VENV", tmp_path / ".venv-ls")
    with pytest.raises(LabelStudioNotInstalled, match="make ls-env"):
        label_studio_server.start_label_studio(tmp_path)
    monkeypatch.setenv("LABEL_STUDIO_PYTHON", str(tmp_path / "nope" / "python"))
    with pytest.raises(LabelStudioNotInstalled, match="LABEL_STUDIO_PYTHON"):
        label_studio_server.label_studio_command()


def test_rectangles_in_percent_of_the_prepared_image(answers):
    config = parse_label_config(LABEL_CONFIG)
    assert (config.from_name, config.to_name, config.data_key, config.classes) == (
        "label",
        "image",
        "image",
        CLASSES,
    )
    results = rectangle_results(answers["photo.jpg"], TRANSFORM, 300, 300, config)
    assert [(r["value"]["rectanglelabels"], r["original_width"], r["original_height"]) for r in results] == [
        (["red"], 300, 300),
        (["blue"], 300, 300),
    ]
    for result, (_, box) in zip(results, EXPECTED, strict=True):
        assert {k: result["value"][k] for k in box} == pytest.approx(box)
    assert rectangle_results(None, TRANSFORM, 300, 300, config) == []


# --- the server -----------------------------------------------------------------------------


def test_token_works_with_the_sdk_and_plain_http(label_studio):
    project = label_studio.client().projects.create(title="sdk token check", label_config=LABEL_CONFIG)
    assert project.id
    response = requests.get(
        f"{label_studio.url}/api/projects/{project.id}", headers=label_studio.headers, timeout=30
    )
    assert response.status_code == 200
    assert response.json()["parsed_label_config"]["label"]["labels"] == list(CLASSES)


def test_wrong_token_is_refused_with_401(label_studio):
    response = requests.get(
        f"{label_studio.url}/api/projects", headers={"Authorization": "Token wrong-token-123"}, timeout=30
    )
    assert response.status_code == 401
    with pytest.raises(ApiError) as err:
        LabelStudio(base_url=label_studio.url, api_key="0" * 40).projects.get(id=1)
    assert err.value.status_code == 401


def test_s3_storage_on_the_emulator_validates_with_presign(project, emulator):
    _, storage = project
    assert storage.s3endpoint == emulator.url
    assert storage.presign is True


def test_private_network_endpoints_stay_refused(label_studio, bucket, project):
    """Only loopback is allowed: SSRF protection still refuses a private network's address."""
    with pytest.raises(ApiError) as err:
        label_studio.client().import_storage.s3.create(
            project=project[0].id, bucket=bucket, s3endpoint="http://10.255.255.1:9000", region_name=REGION
        )
    # Label Studio's SsrfBlockedUrlError
    assert err.value.status_code == 403
    assert "reserved network address (block: 10.0.0.0/8)" in json.dumps(err.value.body)


def test_imported_s3_task_resolves_to_the_jpeg(label_studio, emulator, s3, bucket, project):
    """A task imported through the API with an s3:// URL needs no sync: the connected source storage
    resolves it (GET /tasks/<id>/resolve/ answers 303 to a URL presigned for the emulator)."""
    body = _put_image(s3, bucket, "input/resolve.jpg")
    (task_id,) = _import(label_studio, project[0].id, [{"image": f"s3://{bucket}/input/resolve.jpg"}])
    task = requests.get(f"{label_studio.url}/api/tasks/{task_id}", headers=label_studio.headers, timeout=30)
    url = task.json()["data"]["image"]
    assert url.startswith(f"{label_studio.url}/tasks/{task_id}/resolve/?fileuri=")
    redirect = requests.get(url, headers=label_studio.headers, allow_redirects=False, timeout=30)
    assert redirect.status_code == 303, redirect.text
    location = redirect.headers["Location"]
    assert location.startswith(f"{emulator.url}/{bucket}/input/resolve.jpg?")
    assert "X-Amz-Signature=" in location
    image = requests.get(location, timeout=30)
    assert image.status_code == 200
    assert image.content == body
    # Without the token, Label Studio resolves nothing.
    assert requests.get(url, allow_redirects=False, timeout=30).status_code in (401, 403)


def test_annotator_labels_a_task_from_the_answer_key(label_studio, s3, bucket, project, answers):
    project_id = project[0].id
    _put_image(s3, bucket, "input/photo-prepared.jpg", source="some/folder/photo.jpg")
    (task_id,) = _import(label_studio, project_id, [{"image": f"s3://{bucket}/input/photo-prepared.jpg"}])
    # Too recent for the delay: left alone.
    assert annotate_pending(label_studio.url, label_studio.token, project_id, s3, answers, 3600) == 0
    assert annotate_pending(label_studio.url, label_studio.token, project_id, s3, answers, 0) == 1
    (annotation,) = _annotations(label_studio, task_id)
    assert not annotation["was_cancelled"]
    results = annotation["result"]
    assert [r["value"]["rectanglelabels"] for r in results] == [["red"], ["blue"]]
    for result, (_, box) in zip(results, EXPECTED, strict=True):
        assert (result["from_name"], result["to_name"], result["type"]) == (
            "label",
            "image",
            "rectanglelabels",
        )
        assert (result["original_width"], result["original_height"], result["image_rotation"]) == (
            300,
            300,
            0,
        )
        assert {k: result["value"][k] for k in box} == pytest.approx(box)
        assert result["value"]["rotation"] == 0
    # Annotated tasks are not labelled twice.
    assert annotate_pending(label_studio.client(), None, project_id, s3, answers, 0) == 0


def test_annotator_thread_finds_projects_by_title_prefix(label_studio, s3, bucket, project, answers):
    project_obj, _ = project
    _put_image(s3, bucket, "input/unknown.jpg", source="not-in-the-key.jpg")
    (task_id,) = _import(label_studio, project_obj.id, [{"image": f"s3://{bucket}/input/unknown.jpg"}])
    thread = AnnotatorThread(
        label_studio.url,
        label_studio.token,
        s3_client=s3,
        answers=answers,
        title_prefix=project_obj.title,
        interval=0.2,
    )
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not _annotations(label_studio, task_id) and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        thread.stop()
    assert thread.last_error is None
    # No answer for that image: an empty annotation, as the Ground Truth simulation's worker draws no box.
    assert [a["result"] for a in _annotations(label_studio, task_id)] == [[]]
    assert thread.annotated == 1


def test_a_second_server_starts_from_the_template_and_stops(tmp_path, label_studio):
    """Later starts copy the migrated database; stop() ends the server's whole process group."""
    with label_studio_server.label_studio_server(tmp_path, timeout=120) as other:
        assert not other.migrated
        assert other.url != label_studio.url
        assert (other.data_dir / "label_studio.sqlite3").is_file()
        assert other.process.poll() is None
    assert other.process.poll() is not None
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{other.url}/api/projects", headers=other.headers, timeout=5)


def _rect(x, y, w, h, label, region=None, score=None):
    item = {
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "value": {"x": x, "y": y, "width": w, "height": h, "rotation": 0, "rectanglelabels": [label]},
    }
    if region is not None:
        item["id"] = region
    if score is not None:
        item["score"] = score
    return item


def test_the_annotator_corrects_pre_drawn_boxes_as_a_person_would():
    config = parse_label_config(LABEL_CONFIG)
    answers = [
        _rect(10, 10, 20, 20, "red", "drawn-0"),
        _rect(50, 50, 20, 20, "blue", "drawn-1"),
        _rect(70, 10, 10, 10, "red", "drawn-2"),
        _rect(5, 80, 10, 10, "blue", "drawn-3"),
    ]
    predicted = [
        _rect(11, 10, 20, 20, "red", "deeplens-pred-0", 0.9),  # IoU ≈ 0.9, right class: kept as drawn
        _rect(50, 50, 20, 20, "red", "deeplens-pred-1", 0.8),  # right place, wrong class: fixed
        _rect(73, 13, 10, 10, "red", "deeplens-pred-2", 0.7),  # IoU ≈ 0.3: dragged onto the answer
        _rect(40, 85, 5, 5, "blue", "deeplens-pred-3", 0.6),  # nothing there: deleted
        {**_rect(5, 80, 10, 10, "blue", "other"), "from_name": "another-control"},  # not ours: ignored
    ]
    results, counts = correct_predictions(predicted, answers, config)
    assert counts == {"kept": 1, "fixed": 2, "deleted": 1, "drawn": 1}
    by_id = {r["id"]: r for r in results}
    assert by_id["deeplens-pred-0"]["value"] == predicted[0]["value"]  # exactly as pre-drawn
    assert "score" not in by_id["deeplens-pred-0"]
    assert by_id["deeplens-pred-1"]["value"] == answers[1]["value"]
    assert by_id["deeplens-pred-2"]["value"] == answers[2]["value"]
    assert "deeplens-pred-3" not in by_id
    assert by_id["drawn-0"]["value"] == answers[3]["value"]  # the answer no pre-drawn box covered
    # Without pre-drawn boxes the annotator draws every answer.
    drawn, counts = correct_predictions([], answers, config)
    assert counts["drawn"] == 4 and [r["value"] for r in drawn] == [a["value"] for a in answers]
