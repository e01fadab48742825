"""Device commands: its file system (a mount namespace), the sudo and systemctl shims, greengrassd."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from emulator.simulated_deeplens import SimulatedDeepLens
from tests.emulator.simulated_deeplens.conftest import HEARTBEAT, STAND_IN_FUNCTION, read_heartbeat, wait_for


@pytest.fixture
def device(tmp_path: Path):
    with SimulatedDeepLens(
        tmp_path / "device",
        thing_name="deeplens_shell",
        environment=lambda: {"EXTRA_VARIABLE": "from-provider"},
    ) as device:
        yield device


def test_device_sees_its_own_folders_not_the_hosts(device: SimulatedDeepLens, tmp_path: Path) -> None:
    (tmp_path / "host-only").write_text("host")
    device.host_path("/opt/awscam/artifacts/model-symbol.json").write_text("{}")
    result = device.run(
        ["/bin/sh", "-c", f"ls /opt/awscam/artifacts; pwd; test -e {tmp_path}/host-only || echo hidden; "
         "touch /greengrass/v2/made-on-device; for c in sudo systemctl python3.7; do command -v $c; done"]
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    lines = result.stdout.split()
    assert lines[:3] == ["model-symbol.json", "/home/aws_cam", "hidden"]
    assert lines[3:] == ["/.simulator/bin/sudo", "/.simulator/bin/systemctl", "/.simulator/bin/python3.7"]
    assert device.host_path("/greengrass/v2/made-on-device").exists()
    with pytest.raises(ValueError, match="not in the device root"):
        device.host_path("/etc/passwd")


def test_sudo_runs_the_command_and_refuses_unknown_options(device: SimulatedDeepLens) -> None:
    ok = device.run(["sudo", "-n", "-E", "-u", "root", "--", "sh", "-c", "echo $HOME"])
    assert (ok.returncode, ok.stdout) == (0, "/home/aws_cam\n")
    bad = device.run(["sudo", "-Z", "true"])
    assert bad.returncode == 1
    assert "invalid option" in bad.stderr


def test_systemctl_knows_only_greengrassd(device: SimulatedDeepLens) -> None:
    unknown = device.run(["sudo", "-n", "systemctl", "restart", "nginx"])
    assert unknown.returncode == 5
    assert "Unit nginx.service not found" in unknown.stderr
    assert device.run(["systemctl", "status", "nginx"]).returncode == 4
    verb = device.run(["systemctl", "reboot-now", "greengrassd"])
    assert verb.returncode == 1
    assert "Unknown command verb" in verb.stderr
    inactive = device.run(["systemctl", "status", "greengrassd.service"])
    assert inactive.returncode == 3
    assert "inactive (dead)" in inactive.stdout


def test_restarting_greengrassd_restarts_the_function(device: SimulatedDeepLens) -> None:
    function = device.host_path("/opt/deeplens-pipeline/function")
    function.mkdir(parents=True)
    (function / "deeplens_inference.py").write_text(STAND_IN_FUNCTION)
    heartbeat = device.host_path(HEARTBEAT)
    result = device.run(["sudo", "-n", "systemctl", "restart", "greengrassd"])
    assert result.returncode == 0, result.stderr
    first = wait_for(lambda: read_heartbeat(heartbeat), what="the function to start")
    assert first["cwd"] == "/opt/deeplens-pipeline/function"
    assert (first["thing"], first["extra"]) == ("deeplens_shell", "from-provider")
    assert device.run(["systemctl", "is-active", "greengrassd"]).stdout == "active\n"
    heartbeat.unlink()
    assert device.run(["sudo", "-n", "systemctl", "restart", "greengrassd"]).returncode == 0
    second = wait_for(lambda: read_heartbeat(heartbeat), what="the function to restart")
    assert second["pid"] != first["pid"]
    assert not _alive(first["pid"]), "the first process is gone"
    assert device.run(["systemctl", "stop", "greengrassd"]).returncode == 0
    assert device.greengrassd is not None and device.greengrassd.running() == []
    log = device.host_path("/greengrass/ggc/var/log/user/function.log").read_text()
    assert log.count("stand-in function running") == 2


def _alive(pid: int, timeout: float = 5.0) -> bool:
    """True when ``pid`` (device pids are host pids) still runs after ``timeout``; zombies are dead."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return False
        if state in ("Z", "X"):
            return False
        if time.monotonic() >= deadline:
            return True
        time.sleep(0.05)


def test_the_checkout_stays_visible_even_under_a_device_folder(tmp_path: Path, monkeypatch) -> None:
    """A clone under /tmp (as CI makes) must still run its .venv-ml on the device: the checkout is
    kept at its own path, while the rest of the host's /tmp stays hidden."""
    from emulator.simulated_deeplens import namespace

    checkout = tmp_path / "clone"  # under the host's /tmp, which the device replaces with its own
    checkout.mkdir()
    (checkout / "marker").write_text("seen\n")
    (tmp_path / "elsewhere").write_text("hidden")
    monkeypatch.setattr(namespace, "HOST_PATHS_KEPT", (checkout,))
    with SimulatedDeepLens(tmp_path / "device", thing_name="deeplens_keep") as device:
        result = device.run(
            ["/bin/sh", "-c", f"cat {checkout}/marker; test -e {tmp_path}/elsewhere || echo hidden"]
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["seen", "hidden"]
