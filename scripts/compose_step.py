"""The steps of the docker-compose stack, one command each (tests/test_docker_compose.py runs them too).

``python scripts/compose_step.py STEP``, in the order the stack runs them:

- ``dataset``: generate the sample dataset (photos and their answer key) into ``$DEMO_DATA_DIR``
  (a named volume), unless the same dataset is already there; then exit.
- ``emulator``: serve the emulator (moto + extension) on ``$EMULATOR_HOST:$EMULATOR_PORT`` until
  SIGTERM; it writes ``$EMULATOR_READY_FILE`` once the extension is installed and it serves.
- ``healthcheck``: exit 0 when the emulator is ready: its ready file exists and it answers HTTP.
- ``seed``: create, in the emulator at ``$EMULATOR_URL``, exactly the resources the trigger form's
  defaults name (bucket, SageMaker and Lambda roles, private work team, the DeepLens thing as a
  Greengrass V2 core), check that they match, and print the values to fill in (``image_source``,
  and ``labeling_backend`` when the form's default is not the emulated Ground Truth).

Every setting comes from the environment, so the compose file and the test differ only in paths
and ports.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
import os
import sys
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "include"), str(ROOT / "plugins")]


GROUND_TRUTH = "ground-truth"
"""The labelling backend the stack offers: Ground Truth, emulated (labels from the answer key)."""


def _data_dir() -> Path:
    return Path(os.environ.get("DEMO_DATA_DIR", "/opt/data"))


def dataset_dir() -> Path:
    """Where the sample dataset is: ``images/`` and ``answer_key.json``."""
    return _data_dir() / "dataset"


def dataset() -> int:
    """Generate the sample dataset (deterministic: an existing one of the same size is kept)."""
    from emulator.sample_dataset import DEFAULT_CLASSES, generate_sample_dataset

    n_images = int(os.environ.get("DATASET_IMAGES", "60"))
    out = dataset_dir()
    key_file = out / "answer_key.json"  # written last: its presence means the images are complete
    if key_file.is_file():
        key = json.loads(key_file.read_text())
        if len(key["images"]) == n_images and key["classes"] == list(DEFAULT_CLASSES):
            print(f"Sample dataset already in {out}: {n_images} photos, answer key {key_file}", flush=True)
            return 0
    generate_sample_dataset(out, n_images=n_images)
    print(f"Generated {n_images} sample photos in {out / 'images'}, answer key {key_file}", flush=True)
    return 0


def _ready_file() -> Path:
    return Path(os.environ.get("EMULATOR_READY_FILE", "/tmp/emulator/ready"))


def emulator() -> int:
    """Serve the emulator until SIGTERM (``docker stop``) or SIGINT."""
    from emulator.server import main

    ready = _ready_file()
    ready.unlink(missing_ok=True)  # a restarted container must not look healthy before it serves
    ready.parent.mkdir(parents=True, exist_ok=True)
    host = os.environ.get("EMULATOR_HOST", "0.0.0.0")
    port = os.environ.get("EMULATOR_PORT", "5000")
    return main(["--host", host, "--port", port, "--url-file", str(ready)])


def healthcheck() -> int:
    """0 when the emulator serves with its extension installed, 1 otherwise (the reason on stderr)."""
    ready = _ready_file()
    if not ready.is_file():
        print(f"not ready: {ready} is not written yet (the extension is installing)", file=sys.stderr)
        return 1
    port = urlsplit(ready.read_text().strip()).port
    if port is None:
        print(f"not ready: {ready} holds no URL with a port", file=sys.stderr)
        return 1
    url = f"http://127.0.0.1:{port}/"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            status = response.status
    except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out, not HTTP
        print(f"not serving: {url}: {exc}", file=sys.stderr)
        return 1
    if status != 200:
        print(f"not serving: {url} answered {status}", file=sys.stderr)
        return 1
    return 0


def seed() -> int:
    """Seed the emulator with the resources the trigger form's defaults name; print what to fill in."""
    from deeplens_pipeline.params import PARAM_SPECS
    from emulator import seed as seeding

    url = os.environ.get("EMULATOR_URL", "http://emulator:5000")
    defaults = {name: spec.default for name, spec in PARAM_SPECS.items()}
    account = seeding.seed_demo_account(url, region=defaults["region"], bucket=defaults["bucket"])
    thing_name = defaults["thing_name"]
    if account.thing_name != thing_name:
        # The seed names its DeepLens after the bucket; register the form's default device the same way.
        group_id = seeding._register_device(url, account.region, thing_name)
        seeding.register_greengrass_v2_core(url, account.region, thing_name)
        account = dataclasses.replace(account, thing_name=thing_name, group_id=group_id)
    offered = account.as_params()
    differ = {name: value for name, value in offered.items() if value != defaults[name]}
    if differ:
        for name, value in differ.items():
            print(f"seed: {name} is {value!r} but the form's default is {defaults[name]!r}", file=sys.stderr)
        return 1
    images = dataset_dir() / "images"
    key = json.loads((dataset_dir() / "answer_key.json").read_text())
    conf = {"image_source": str(images)}
    if key["classes"] != defaults["classes"]:
        conf["classes"] = key["classes"]
    if defaults.get("labeling_backend", GROUND_TRUTH) != GROUND_TRUTH:
        conf["labeling_backend"] = GROUND_TRUTH  # the emulator's simulated workforce labels the photos
    print("Seeded the emulator with the trigger form's defaults:", flush=True)
    for name, value in offered.items():
        print(f"  {name:<16} {value}")
    print("In the trigger form, set:")
    for name, value in conf.items():
        print(f"  {name:<16} {value}")
    print("or paste this line's JSON into the form's configuration JSON:")
    print(f"TRIGGER_CONF={json.dumps(conf)}", flush=True)
    return 0


STEPS = {"dataset": dataset, "emulator": emulator, "healthcheck": healthcheck, "seed": seed}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or args[0] not in STEPS:
        print(f"usage: compose_step.py {{{','.join(STEPS)}}}", file=sys.stderr)
        return 2
    return STEPS[args[0]]()


if __name__ == "__main__":
    sys.exit(main())
