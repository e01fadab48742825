"""Packaging and publishing the inference function: deterministic zip, idempotent versions (moto server)."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import io
import os
import shutil
import subprocess
import sys
import uuid
import zipfile
from pathlib import Path

import boto3
import pytest
from botocore.stub import Stubber

from deeplens_pipeline import lambda_package as lp

REPO_LAMBDA = Path(__file__).resolve().parents[2] / "include" / "lambda"
REGION = "us-east-1"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A copy of the function's folder, with the clutter a working copy collects."""
    folder = tmp_path / "lambda"
    shutil.copytree(REPO_LAMBDA, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "deeplens_logic.cpython-311.pyc").write_bytes(b"compiled")
    (folder / ".DS_Store").write_bytes(b"finder")
    return folder


# -- the package ------------------------------------------------------------------------------


def test_zip_is_deterministic_and_ignores_clutter_and_mtimes(source: Path) -> None:
    first = lp.build_deployment_zip(source)
    for path in source.iterdir():
        os.utime(path, (1_700_000_000, 1_700_000_000))
    second = lp.build_deployment_zip(source)
    assert first == second
    with zipfile.ZipFile(io.BytesIO(first)) as archive:
        names = archive.namelist()
        infos = archive.infolist()
    own = [p.name for p in REPO_LAMBDA.glob("*") if p.is_file() and p.suffix != ".pyc"]
    assert names == sorted(own + [name for name, _ in lp.sdk_files()])
    assert "deeplens_inference.py" in names
    assert not any("__pycache__" in name or name.endswith(".pyc") or "DS_Store" in name for name in names)
    assert all(info.date_time == lp.ZIP_TIMESTAMP for info in infos)
    assert all(info.external_attr >> 16 == lp.ZIP_FILE_MODE for info in infos)
    assert all(info.compress_type == zipfile.ZIP_STORED for info in infos)


# -- greengrasssdk at the zip's root (AWS's Greengrass V1 packaging guide) ---------------------


def test_zip_holds_greengrasssdk_at_its_root_beside_the_entry_module() -> None:
    package = lp.build_deployment_zip()
    with zipfile.ZipFile(io.BytesIO(package)) as archive:
        names = set(archive.namelist())
        init = archive.read("greengrasssdk/__init__.py")
        licence = archive.read("greengrasssdk/LICENSE")
    assert {"deeplens_inference.py", "greengrasssdk/__init__.py", "greengrasssdk/client.py"} <= names
    assert "greengrasssdk/IoTDataPlane.py" in names  # what client('iot-data') imports
    assert b"__version__ = '1.6.1'" in init
    assert b"Apache License" in licence
    assert not any(name.startswith("greengrasssdk-") for name in names)  # no installer metadata
    assert package == lp.build_deployment_zip()  # reproducible


def test_sdk_files_are_the_wheels_bytes() -> None:
    """Every SDK file matches the SHA-256 the 1.6.1 wheel recorded: the same bytes on every machine."""
    distribution = importlib.metadata.distribution("greengrasssdk")
    recorded = {
        str(f): f.hash.value for f in distribution.files if f.hash and str(f).startswith("greengrasssdk/")
    }
    files = dict(lp.sdk_files())
    assert {name for name in files if name != lp.SDK_LICENSE_NAME} == {
        name for name in recorded if "__pycache__" not in name
    }
    for name, data in files.items():
        if name != lp.SDK_LICENSE_NAME:
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert digest == recorded[name], name


def test_the_zip_root_imports_as_the_device_does(tmp_path: Path) -> None:
    """Unpacked as Greengrass unpacks it, the zip's own greengrasssdk imports (no site-packages)."""
    with zipfile.ZipFile(io.BytesIO(lp.build_deployment_zip())) as archive:
        archive.extractall(tmp_path)
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import greengrasssdk, deeplens_iot; "
        "print(greengrasssdk.__version__, greengrasssdk.__file__.startswith(sys.argv[1]), "
        "deeplens_iot.greengrass_runtime({'MY_FUNCTION_ARN': 'arn'}))"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", code, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1.6.1", "True", "greengrass-lambda"]


def fake_sdk(tmp_path: Path, version: str = lp.SDK_VERSION, tamper: bool = False):
    """An installed greengrasssdk distribution (dist-info with RECORD) in ``tmp_path``."""
    files = {
        "greengrasssdk/__init__.py": b"__version__ = 'x'\n",
        "greengrasssdk/__pycache__/__init__.cpython-311.pyc": b"compiled",
        f"greengrasssdk-{version}.dist-info/LICENSE": b"Apache License\n",
        f"greengrasssdk-{version}.dist-info/METADATA": (
            f"Metadata-Version: 2.1\nName: greengrasssdk\nVersion: {version}\nLicense-File: LICENSE\n"
        ).encode(),
    }
    record = []
    for name, data in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(data)
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append(f"greengrasssdk-{version}.dist-info/RECORD,,")
    (tmp_path / f"greengrasssdk-{version}.dist-info" / "RECORD").write_text("\n".join(record) + "\n")
    if tamper:
        (tmp_path / "greengrasssdk" / "__init__.py").write_bytes(b"__version__ = 'patched'\n")
    return importlib.metadata.PathDistribution(tmp_path / f"greengrasssdk-{version}.dist-info")


def test_sdk_files_take_the_package_and_its_licence_only(tmp_path: Path) -> None:
    assert lp.sdk_files(fake_sdk(tmp_path)) == [
        ("greengrasssdk/LICENSE", b"Apache License\n"),
        ("greengrasssdk/__init__.py", b"__version__ = 'x'\n"),
    ]


def test_sdk_files_refuse_another_version_a_modified_copy_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RuntimeError, match="greengrasssdk 1.5.0 is installed, .* packaged with 1.6.1"):
        lp.sdk_files(fake_sdk(tmp_path / "old", version="1.5.0"))
    with pytest.raises(RuntimeError, match="does not match the hash in its RECORD"):
        lp.sdk_files(fake_sdk(tmp_path / "patched", tamper=True))

    def not_installed(name: str):
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(importlib.metadata, "distribution", not_installed)
    with pytest.raises(FileNotFoundError, match=r"greengrasssdk==1.6.1 is not installed"):
        lp.build_deployment_zip(REPO_LAMBDA)


def test_a_source_folder_with_its_own_sdk_is_refused(source: Path) -> None:
    (source / "greengrasssdk").mkdir()
    (source / "greengrasssdk" / "__init__.py").write_text("")
    with pytest.raises(ValueError, match="has its own greengrasssdk"):
        lp.build_deployment_zip(source)


def test_code_change_changes_the_sha(source: Path) -> None:
    before = lp.build_deployment_zip(source)
    with (source / "deeplens_logic.py").open("a") as handle:
        handle.write("\n# changed\n")
    after = lp.build_deployment_zip(source)
    assert lp.code_sha256(before) != lp.code_sha256(after)
    assert lp.code_sha256(before) == base64.b64encode(hashlib.sha256(before).digest()).decode()


def test_folder_without_the_function_is_refused(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="has no deeplens_inference.py"):
        lp.build_deployment_zip(tmp_path)


def test_locate_prefers_env_then_package_data_then_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: Path
) -> None:
    monkeypatch.delenv(lp.LAMBDA_SRC_ENV, raising=False)
    assert lp.locate_lambda_source() == REPO_LAMBDA
    monkeypatch.setenv(lp.LAMBDA_SRC_ENV, str(source))
    assert lp.locate_lambda_source() == source
    # as unpacked from plugins.zip on MWAA: deeplens_pipeline/lambda_src beside the module
    monkeypatch.delenv(lp.LAMBDA_SRC_ENV)
    package = tmp_path / "plugins" / "deeplens_pipeline"
    shutil.copytree(source, package / "lambda_src")
    monkeypatch.setattr(lp, "__file__", str(package / "lambda_package.py"))
    assert lp.locate_lambda_source() == package / "lambda_src"
    shutil.rmtree(package / "lambda_src")
    monkeypatch.setenv(lp.LAMBDA_SRC_ENV, str(tmp_path / "nowhere"))
    expected = r"\$DEEPLENS_LAMBDA_SRC: .*nowhere; package data: .*lambda_src"
    with pytest.raises(FileNotFoundError, match=expected):
        lp.locate_lambda_source()


# -- names and specs --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["object-detection", "DeepLens-x", "deeplens_x"])
def test_names_not_beginning_with_deeplens_dash_are_refused(name: str) -> None:
    with pytest.raises(ValueError, match="must begin with 'deeplens-': AWS DeepLens only reads"):
        lp.check_function_name(name)


def test_name_with_bad_characters_is_refused() -> None:
    with pytest.raises(ValueError, match="1-64 letters"):
        lp.check_function_name("deeplens-a.b")
    with pytest.raises(ValueError, match="1-64 letters"):
        lp.check_function_name("deeplens-" + "x" * 60)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"role_arn": "my-role"}, "not an IAM role ARN"),
        ({"timeout": 0}, "1..900"),
        ({"memory_size": 64}, "128..10240"),
        ({"runtime": "python3.7"}, r"Lambda refuses \(or, deprecated, will soon refuse\) to create"),
        ({"runtime": "python3.8"}, "FunctionRuntimeOverride"),
    ],
)
def test_spec_validation(changes: dict, message: str) -> None:
    values = {"name": "deeplens-x", "role_arn": "arn:aws:iam::123456789012:role/r", **changes}
    with pytest.raises(ValueError, match=message):
        lp.FunctionSpec(**values)


def test_configuration_differences_cover_runtime_handler_role_limits_and_environment() -> None:
    role = "arn:aws:iam::123456789012:role/r"
    spec = lp.FunctionSpec(name="deeplens-x", role_arn=role, environment={"A": "1"})
    current = {**spec.configuration()}
    assert lp.configuration_differences(current, spec) == []
    changed = {
        **current,
        "Runtime": "python3.12",
        "Handler": "other.handler",
        "Role": "arn:aws:iam::123456789012:role/other",
        "Timeout": 3,
        "MemorySize": 128,
        "Environment": {"Variables": {"A": "2"}},
    }
    assert lp.configuration_differences(changed, spec) == [
        "Runtime",
        "Handler",
        "Role",
        "Timeout",
        "MemorySize",
        "Environment",
    ]
    no_env = lp.FunctionSpec(name="deeplens-x", role_arn="arn:aws:iam::123456789012:role/r")
    without = {key: value for key, value in no_env.configuration().items() if key != "Environment"}
    assert lp.configuration_differences(without, no_env) == []  # absent environment == empty


def test_unqualified_arn() -> None:
    arn = "arn:aws:lambda:us-east-1:123456789012:function:deeplens-x"
    assert lp.unqualified_arn(f"{arn}:7") == arn
    assert lp.unqualified_arn(arn) == arn
    with pytest.raises(ValueError, match="not a Lambda function ARN"):
        lp.unqualified_arn("arn:aws:iam::123456789012:role/r")


# -- against the Lambda API (moto server) -----------------------------------------------------


@pytest.fixture
def aws(moto_endpoint: str) -> dict:
    session = boto3.session.Session(region_name=REGION)
    clients = {name: session.client(name, endpoint_url=moto_endpoint) for name in ("lambda", "iam")}
    role = clients["iam"].create_role(
        RoleName=f"deeplens-lambda-{uuid.uuid4().hex[:8]}",
        AssumeRolePolicyDocument='{"Version":"2012-10-17","Statement":[{"Effect":"Allow",'
        '"Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}',
    )
    clients["role_arn"] = role["Role"]["Arn"]
    return clients


def _spec(aws: dict, name: str, **changes) -> lp.FunctionSpec:
    environment = {"DEEPLENS_MODEL_NAME": "deploy_model_algo_1", "DEEPLENS_LABELS": '["bar"]'}
    return lp.FunctionSpec(name=name, role_arn=aws["role_arn"], environment=environment, **changes)


def _versions(client, name: str) -> list[str]:
    return [v["Version"] for v in client.list_versions_by_function(FunctionName=name)["Versions"]]


def test_publish_creates_then_reuses_then_versions_changes(aws: dict, source: Path) -> None:
    client = aws["lambda"]
    name = f"deeplens-inference-{uuid.uuid4().hex[:8]}"
    package = lp.build_deployment_zip(source)
    spec = _spec(aws, name)

    first = lp.publish_inference_function(client, spec, package)
    assert first.created
    assert first.version == "1"
    assert first.function_arn == f"arn:aws:lambda:{REGION}:123456789012:function:{name}"
    assert first.version_arn == f"{first.function_arn}:1"
    assert first.code_sha256 == lp.code_sha256(package)
    config = client.get_function_configuration(FunctionName=name, Qualifier="1")
    assert config["Runtime"] == lp.DEFAULT_RUNTIME == "python3.13"
    assert config["Handler"] == "deeplens_inference.function_handler"
    assert config["Environment"]["Variables"] == spec.environment

    again = lp.publish_inference_function(client, spec, lp.build_deployment_zip(source))
    assert (again.version, again.created) == ("1", False)
    assert _versions(client, name) == ["$LATEST", "1"]

    settings_changed = lp.publish_inference_function(client, _spec(aws, name, timeout=60), package)
    assert (settings_changed.version, settings_changed.created) == ("2", True)
    assert client.get_function_configuration(FunctionName=name, Qualifier="2")["Timeout"] == 60

    with (source / "deeplens_logic.py").open("a") as handle:
        handle.write("\n# a fix\n")
    new_code = lp.build_deployment_zip(source)
    code_changed = lp.publish_inference_function(client, _spec(aws, name, timeout=60), new_code)
    assert (code_changed.version, code_changed.created) == ("3", True)
    assert code_changed.code_sha256 == lp.code_sha256(new_code) != first.code_sha256
    version_3 = client.get_function_configuration(FunctionName=name, Qualifier="3")
    assert version_3["CodeSha256"] == lp.code_sha256(new_code)
    assert _versions(client, name) == ["$LATEST", "1", "2", "3"]


def test_publish_passes_code_sha_and_revision_guards() -> None:
    """Against AWS (which reports RevisionId), updates and publishing carry both guards."""
    client = boto3.client("lambda", region_name=REGION)
    spec = lp.FunctionSpec(name="deeplens-x", role_arn="arn:aws:iam::123456789012:role/r")
    package = b"PK-not-really-a-zip"
    sha = lp.code_sha256(package)
    arn = "arn:aws:lambda:us-east-1:123456789012:function:deeplens-x"
    latest = {**spec.configuration(), "FunctionArn": arn, "CodeSha256": "old", "RevisionId": "rev-1"}
    with Stubber(client) as stub:
        stub.add_response("get_function_configuration", latest, {"FunctionName": "deeplens-x"})
        stub.add_response(
            "update_function_code",
            {"FunctionName": "deeplens-x"},
            {"FunctionName": "deeplens-x", "ZipFile": package, "Publish": False, "RevisionId": "rev-1"},
        )
        stub.add_response(
            "get_function",
            {"Configuration": {"LastUpdateStatus": "Successful"}},
            {"FunctionName": "deeplens-x"},
        )
        stub.add_response(
            "get_function_configuration",
            {**latest, "CodeSha256": sha, "RevisionId": "rev-2"},
            {"FunctionName": "deeplens-x"},
        )
        stub.add_response("list_versions_by_function", {"Versions": []}, {"FunctionName": "deeplens-x"})
        # publishing is guarded by the revision checked above: no second read in between
        stub.add_response(
            "publish_version",
            {"FunctionArn": f"{arn}:4", "Version": "4", "CodeSha256": sha},
            {
                "FunctionName": "deeplens-x",
                "CodeSha256": sha,
                "Description": spec.description,
                "RevisionId": "rev-2",
            },
        )
        published = lp.publish_inference_function(client, spec, package)
        stub.assert_no_pending_responses()
    assert published.to_dict() == {
        "function_arn": arn,
        "version": "4",
        "version_arn": f"{arn}:4",
        "code_sha256": sha,
    }


def test_publish_refuses_a_version_with_other_code() -> None:
    client = boto3.client("lambda", region_name=REGION)
    spec = lp.FunctionSpec(name="deeplens-x", role_arn="arn:aws:iam::123456789012:role/r")
    arn = "arn:aws:lambda:us-east-1:123456789012:function:deeplens-x"
    with Stubber(client) as stub:
        stub.add_response("list_versions_by_function", {"Versions": []}, {"FunctionName": "deeplens-x"})
        stub.add_response("get_function_configuration", {"FunctionArn": arn}, {"FunctionName": "deeplens-x"})
        stub.add_response(
            "publish_version",
            {"FunctionArn": f"{arn}:2", "Version": "2", "CodeSha256": "someone-else"},
            {"FunctionName": "deeplens-x", "CodeSha256": "mine", "Description": spec.description},
        )
        with pytest.raises(RuntimeError, match="with CodeSha256 someone-else, expected mine"):
            lp.publish_version(client, spec, "mine")


def test_a_function_left_on_python37_moves_to_the_new_runtime_after_updates_are_blocked(
    aws: dict, source: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An earlier deployment's python3.7 function: once Lambda blocks its updates, only a
    configuration update can move it off python3.7, so that comes before the code update."""
    from datetime import date

    from emulator.extension import service_rules

    client = aws["lambda"]
    name = f"deeplens-inference-{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(service_rules, "today", lambda: date(2023, 6, 1))  # python3.7 still accepted
    client.create_function(
        FunctionName=name,
        Runtime="python3.7",
        Role=aws["role_arn"],
        Handler=lp.DEFAULT_HANDLER,
        Code={"ZipFile": lp.build_deployment_zip(source)},
    )
    monkeypatch.setattr(service_rules, "today", lambda: date(2027, 6, 1))  # updates blocked too
    with pytest.raises(client.exceptions.InvalidParameterValueException):
        client.update_function_code(FunctionName=name, ZipFile=b"PK\x05\x06" + bytes(18))
    (source / "deeplens_logic.py").write_text("# the new code\n")
    current = lp.create_or_update_function(client, _spec(aws, name), lp.build_deployment_zip(source))
    assert current["Runtime"] == lp.DEFAULT_RUNTIME
    assert current["CodeSha256"] == lp.code_sha256(lp.build_deployment_zip(source))
