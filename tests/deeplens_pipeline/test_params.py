import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import jsonschema
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from deeplens_pipeline import params as params_mod
from deeplens_pipeline.deploy import ssh
from deeplens_pipeline.params import (
    BUCKET_PATTERN,
    INPUT_PREFIX_PATTERN,
    PARAM_SPECS,
    PIPELINE_PREFIXES,
    ParamError,
    bucket_name_problem,
    param_warnings,
    validate_params,
)

PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OPTIONAL = {"image_source", "labels_manifest", "training_image", "ssh_host", "ssh_key_file"}
CONTROL_CHARS = ["\n", "\r", "\t", "\x00", "\x0b", "\x1b", "\x7f", "\x85", "\u2028", "\u2029"]
STRING_PARAMS = [name for name, spec in PARAM_SPECS.items() if spec.schema["type"] == "string"]
PATTERN_PARAMS = [name for name, spec in PARAM_SPECS.items() if "pattern" in spec.schema]
NUMBER_PARAMS = [name for name, spec in PARAM_SPECS.items() if spec.schema["type"] in ("number", "integer")]
# Values of other Params that make a number's whole range valid (the rules between Params).
PARTNERS = {
    "epochs": {"lr_scheduler_step": ""},
    "tuning_learning_rate_min": {"tuning_learning_rate_max": 1},
    "tuning_learning_rate_max": {"tuning_learning_rate_min": 5e-324},
    "tuning_max_parallel_jobs": {"tuning_max_jobs": 500},
    "tuning_max_jobs": {"tuning_max_parallel_jobs": 1},
}


def refused(values: dict) -> str:
    with pytest.raises(ParamError) as err:
        validate_params(values)
    return str(err.value)


def test_defaults_are_valid():
    values = validate_params({})
    assert values["image_shape"] == 512
    assert values["learning_rate"] == 0.0005
    assert values["lr_scheduler_step"] == "5,10,25,40"
    assert set(values) == set(PARAM_SPECS)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("bucket", "my-bucket", "must begin with 'deeplens-' (DeepLens can only read such buckets)"),
        (
            "bucket",
            "deeplens-UPPER",
            "may hold only lower-case letters, digits, '.' and '-' (S3's bucket naming rules)",
        ),
        (
            "bucket",
            "deeplens-a..b",
            "must not contain two adjacent periods ('..') (S3's bucket naming rules)",
        ),
        ("bucket", "deeplens-x.", "must begin and end with a letter or a digit"),
        ("bucket", "deeplens-" + "a" * 55, "must be 3 to 63 characters long, not 64"),
        ("bucket", "deeplens-x-s3alias", "must not end with '-s3alias', which S3 reserves"),
        ("bucket", "deeplens-x--ol-s3", "must not end with '--ol-s3', which S3 reserves"),
        ("bucket", "deeplens-x.mrap", "must not end with '.mrap', which S3 reserves"),
        ("bucket", "deeplens-x--x-s3", "must not end with '--x-s3', which S3 reserves"),
        ("bucket", "deeplens-x--table-s3", "must not end with '--table-s3', which S3 reserves"),
        ("bucket", "deeplens-ok\n", "must not contain control characters such as a newline or a tab"),
        ("image_shape", 400, "must be one of 300, 480, 512"),
        ("classes", [], "must hold at least 1 item"),
        ("classes", ["a", "a"], "must not repeat an item"),
        ("classes", ["Box", "box"], "'Box' and 'box' differ only by case or spaces"),
        ("classes", ["blue box", "bluebox"], "differ only by case or spaces"),
        ("classes", ["box", "box "], "item 2 must be a class name of 1 to 100 characters with no space at"),
        ("classes", ["box", "x\ny"], "item 2 must not contain control characters"),
        ("role_arn", "deeplens-role", "must be an IAM role ARN such as arn:aws:iam::123456789012:role/NAME"),
        ("label_attribute", "boxes-metadata", "and not ending in '-metadata' or '-ref'"),
        ("thing_name", "camera", "deeplens_<uuid>"),
        ("thing_name", "deeplens_x\n", "must not contain control characters"),
        ("lambda_function_name", "my-fn", "must be a function name that begins with 'deeplens-'"),
        ("training_mode", "both", "must be one of 'train', 'tune'"),
        ("workers_per_image", 10, "must be at most 9"),
        ("learning_rate", 0, "must be more than 0"),
        ("learning_rate", float("nan"), "must be a finite number"),
        ("max_reject_share", float("inf"), "must be a finite number"),
        ("labeling_timeout_days", 0, "must be more than 0"),
        ("epochs", "50", "must be a whole number"),
        ("input_prefix", "../", "must not contain a '.' or '..' folder"),
        ("input_prefix", "photos/../", "must not contain a '.' or '..' folder"),
        ("input_prefix", "/", "must be relative to the bucket: no leading '/'"),
        ("input_prefix", "/input/", "must be relative to the bucket"),
        ("input_prefix", "input", "must end with '/'"),
        ("input_prefix", "a//b/", "must not contain an empty folder ('//')"),
        ("input_prefix", "state/", "must not be under state/, where the pipeline keeps the images ledger"),
        ("input_prefix", "reports/", "must not be under reports/"),
        ("input_prefix", "manifests/photos/", "must not be under manifests/"),
        ("input_prefix", "output/", "must not be under output/"),
        ("input_prefix", "labeling/", "must not be under labeling/"),
        ("input_prefix", "deploy/", "must not be under deploy/"),
        ("input_prefix", "ph otos/", "folder 'ph otos' may hold only letters, digits, '_', '.' and '-'"),
        ("lr_scheduler_step", "0,10", "epoch 0 is not a step: the algorithm counts epochs from 1"),
        ("lr_scheduler_step", "10,5", "the epochs must increase, but 5 follows 10"),
        ("lr_scheduler_step", "5,5", "the epochs must increase, but 5 follows 5"),
        ("lr_scheduler_step", "5,50", "every step must be below params.epochs=50"),
        ("lr_scheduler_step", "5,", "must be epoch numbers from 1 separated by commas"),
        ("lr_scheduler_step", "5\n", "must not contain control characters"),
        ("ssh_host", "-oProxyCommand=x", "must be a host name or an IP address"),
        ("ssh_host", "a b", "must be a host name or an IP address"),
        ("ssh_user", "-l", "must be a user name"),
        ("ssh_key_file", "-i", "must be a path of a file on the worker"),
        ("task_title", "   ", "not blank"),
        ("bucket", None, "is required"),
    ],
)
def test_bad_values_name_the_parameter_and_the_rule(name, value, message):
    text = refused({name: value})
    assert text.startswith(f"params.{name}: ")
    assert message in text
    assert text.endswith(f"(got {value!r})")
    assert "[a-z" not in text and "(?!" not in text, "a message in words, not a regex"


def test_unknown_parameter_is_refused():
    with pytest.raises(ParamError, match="unknown parameter"):
        validate_params({"bukcet": "deeplens-x"})


def test_cross_field_rules():
    with pytest.raises(ParamError, match="params.workteam_arn"):
        validate_params({"region": "eu-west-1", "labeling_backend": "ground-truth"})
    # The work team matters only to Ground Truth.
    assert validate_params({"region": "eu-west-1"})["labeling_backend"] == "label-studio"
    with pytest.raises(ParamError, match="params.lr_scheduler_step"):
        validate_params({"epochs": 20})
    with pytest.raises(ParamError, match="params.tuning_learning_rate_min"):
        validate_params({"tuning_learning_rate_min": 0.1})
    with pytest.raises(ParamError, match="params.tuning_max_parallel_jobs"):
        validate_params({"tuning_max_jobs": 1, "tuning_max_parallel_jobs": 2})
    with pytest.raises(
        ParamError, match=r"^params\.ssh_host: deploy_method 'ssh' needs the device's address"
    ):
        validate_params({"deploy_method": "ssh"})


def test_every_spec_has_a_title_help_and_a_section():
    for name, spec in PARAM_SPECS.items():
        assert spec.title and spec.description and spec.section, name
        assert spec.title[0].isupper() and "_" not in spec.title, f"{name}: a title in words"
        if "pattern" in spec.schema.get("items", spec.schema):
            assert spec.rule, f"{name}: a pattern needs its rule in words"


def test_the_default_labelling_backend_is_one_a_new_account_can_use():
    assert validate_params({})["labeling_backend"] == "label-studio"
    with pytest.raises(ParamError, match="params.labeling_backend"):
        validate_params({"labeling_backend": "mechanical-turk"})


def test_the_default_deploy_method_is_one_that_works_today():
    values = validate_params({})
    assert values["deploy_method"] == "greengrass-v2"
    assert param_warnings(values) == []


def test_greengrass_v1_is_selectable_with_a_clear_warning():
    values = validate_params({"deploy_method": "greengrass-v1"})
    (warning,) = param_warnings(values)
    assert warning.startswith("params.deploy_method 'greengrass-v1'")
    assert "7 October 2026" in warning and "greengrass-v2" in warning


@pytest.mark.parametrize("runtime", ["python3.7", "python3.8"])
def test_runtimes_lambda_refuses_are_refused_before_any_call(runtime):
    with pytest.raises(ParamError, match=r"^params\.lambda_runtime: must be one of 'python3.11'"):
        validate_params({"lambda_runtime": runtime})


def test_the_lambda_has_its_own_role():
    values = validate_params({})
    assert values["lambda_role_arn"] != values["role_arn"]
    with pytest.raises(ParamError, match=r"^params\.lambda_role_arn: must be an IAM role ARN"):
        validate_params({"lambda_role_arn": "deeplens-lambda"})
    shared = validate_params({"lambda_role_arn": values["role_arn"]})
    assert any("lambda.amazonaws.com" in w for w in param_warnings(shared))


def test_the_public_crowd_is_refused_with_the_reason():
    public = "arn:aws:sagemaker:us-east-1:394669845002:workteam/public-crowd/default"
    with pytest.raises(ParamError, match=r"^params\.workteam_arn: the public crowd .* price per task"):
        validate_params({"workteam_arn": public, "labeling_backend": "ground-truth"})


def test_vendor_work_teams_are_accepted():
    vendor = "arn:aws:sagemaker:us-east-1:123456789012:workteam/vendor-crowd/acme"
    assert validate_params({"workteam_arn": vendor})["workteam_arn"] == vendor


def test_the_runtime_param_and_the_library_agree():
    from deeplens_pipeline import lambda_package

    assert PARAM_SPECS["lambda_runtime"].default == lambda_package.DEFAULT_RUNTIME
    assert not set(PARAM_SPECS["lambda_runtime"].schema["enum"]) & lambda_package.REFUSED_RUNTIMES


# ------------------------------------------------------------------ optional Params and the form


def test_only_the_params_that_may_be_empty_are_optional():
    assert {name for name, spec in PARAM_SPECS.items() if spec.optional} == OPTIONAL
    for name in OPTIONAL:
        assert PARAM_SPECS[name].default == ""
        assert PARAM_SPECS[name].param_arguments()["type"] == ["null", "string"]


def test_null_from_the_form_is_the_default_again():
    """The form sends a cleared field as null: the operators see the empty default, as before."""
    values = validate_params(dict.fromkeys(OPTIONAL))
    assert all(values[name] == "" for name in OPTIONAL)


def test_whole_numbers_reach_the_operators_as_int():
    values = validate_params({"epochs": 60.0, "image_shape": 300.0})
    assert values["epochs"] == 60 and type(values["epochs"]) is int
    assert type(values["image_shape"]) is int


def test_the_forms_schema_answers_a_bad_value_with_the_rule_in_words():
    """What Airflow's API server runs on a trigger: jsonschema on each Param's schema."""
    for name, value in [("bucket", "my-bucket"), ("input_prefix", "../"), ("ssh_host", "a b")]:
        spec = PARAM_SPECS[name]
        schema = spec.param_arguments()
        with pytest.raises(jsonschema.ValidationError) as err:
            jsonschema.validate(value, schema)
        assert err.value.message == f"{spec.rule!r} was expected"
        assert "pattern" not in schema, "the regex is only under if, whose error Airflow never shows"
        detail = str(err.value)  # all of it reaches the form
        assert schema["if"]["pattern"] not in detail and "does not match" not in detail
    items = PARAM_SPECS["classes"].param_arguments()
    with pytest.raises(jsonschema.ValidationError, match="'a class name of 1 to 100 characters"):
        jsonschema.validate(["ok", " padded"], items)


@pytest.mark.parametrize("name", list(PARAM_SPECS))
def test_every_schema_is_a_valid_json_schema(name):
    spec = PARAM_SPECS[name]
    jsonschema.Draft202012Validator.check_schema(spec.schema)
    jsonschema.Draft202012Validator.check_schema(spec.param_arguments())


@PROPERTY
@given(name=st.sampled_from(PATTERN_PARAMS), text=st.text(max_size=40))
def test_the_forms_schema_accepts_what_the_schema_accepts(name, text):
    spec = PARAM_SPECS[name]
    value = [text] if spec.schema["type"] == "array" else text
    plain = jsonschema.Draft202012Validator(spec.schema).is_valid(value)
    assert jsonschema.Draft202012Validator(spec.param_arguments()).is_valid(value) == plain


# ------------------------------------------------------------------ properties of the validators


@PROPERTY
@given(
    name=st.sampled_from(STRING_PARAMS),
    head=st.text(max_size=20),
    control=st.sampled_from(CONTROL_CHARS),
    at_end=st.booleans(),
)
def test_control_characters_are_refused_in_every_string_param(name, head, control, at_end):
    """A trailing newline ("$" let it through) or any control character, anywhere."""
    default = PARAM_SPECS[name].default or "x"
    value = f"{default}{control}" if at_end else f"{head}{control}{default}"
    text = refused({name: value})
    assert text.startswith(f"params.{name}: ")


@PROPERTY
@given(
    name=st.sampled_from(PATTERN_PARAMS),
    head=st.text(max_size=20),
    control=st.sampled_from(CONTROL_CHARS),
)
def test_no_pattern_accepts_a_control_character(name, head, control):
    """The schemas refuse them too, so Airflow refuses such a run before it starts."""
    schema = PARAM_SPECS[name].schema
    pattern = schema.get("items", schema)["pattern"]
    default = PARAM_SPECS[name].default
    default = default[0] if isinstance(default, list) else default
    assert not re.search(pattern, f"{default}{control}")
    assert not re.search(pattern, f"{head}{control}{default}")


def _number_in_range(name):
    schema = PARAM_SPECS[name].schema
    low = schema.get("minimum", schema.get("exclusiveMinimum", -(10**9)))
    high = schema.get("maximum", schema.get("exclusiveMaximum", 10**9))
    if name == "tuning_learning_rate_min":
        high, exclusive_max = 1, True  # below params.tuning_learning_rate_max=1
    else:
        exclusive_max = "exclusiveMaximum" in schema
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if schema["type"] == "integer":
        return st.integers(low + ("exclusiveMinimum" in schema), high - exclusive_max)
    return st.floats(low, high, exclude_min="exclusiveMinimum" in schema, exclude_max=exclusive_max)


@PROPERTY
@given(data=st.data(), name=st.sampled_from(NUMBER_PARAMS))
def test_any_finite_number_in_range_passes(data, name):
    value = data.draw(_number_in_range(name))
    if name == "tuning_learning_rate_max":
        assume(value > 5e-324)
    assert validate_params({name: value, **PARTNERS.get(name, {})})[name] == value


@pytest.mark.parametrize("name", NUMBER_PARAMS)
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_nan_and_infinity_are_refused(name, value):
    assert refused({name: value}) == f"params.{name}: must be a finite number (got {value!r})"


@PROPERTY
@given(tail=st.text(alphabet="abcz09.-A_", min_size=0, max_size=60))
def test_the_bucket_pattern_and_the_bucket_rules_agree(tail):
    name = f"deeplens-{tail}"
    by_rules = bucket_name_problem(name) is None
    assert bool(re.search(BUCKET_PATTERN, name)) == by_rules
    assert (params_mod._bucket_problem(name) is None) == by_rules


@pytest.mark.parametrize(
    ("name", "problem"),
    [
        ("192.168.5.4", "must not be formatted as an IP address"),
        ("xn--bucket", "must not begin with 'xn--'"),
        ("sthree-bucket", "must not begin with 'sthree-'"),
        ("amzn-s3-demo-bucket", "must not begin with 'amzn-s3-demo-'"),
        ("ab", "3 to 63 characters long"),
        ("-ab", "must begin and end with a letter or a digit"),
        ("a_b", "may hold only lower-case letters"),
    ],
)
def test_s3_bucket_naming_rules(name, problem):
    assert problem in bucket_name_problem(name)


def test_valid_bucket_names():
    for name in ("deeplens-a", "deeplens-my.bucket-2", "deeplens--x", "deeplens-" + "a" * 54):
        assert validate_params({"bucket": name})["bucket"] == name


@PROPERTY
@given(
    prefix=st.text(alphabet="ab./_-", max_size=16) | st.sampled_from([f"{p}x/" for p in PIPELINE_PREFIXES])
)
def test_the_input_prefix_pattern_and_its_rules_agree(prefix):
    by_rules = params_mod._input_prefix_problem(prefix) is None
    assert bool(re.search(INPUT_PREFIX_PATTERN, prefix)) == by_rules


def test_the_pipelines_prefixes_are_every_prefix_it_writes():
    """The input prefix is kept out of every place the pipeline writes in its bucket."""
    from deeplens_pipeline.images import collect, ledger
    from deeplens_pipeline.layout import BucketLayout

    layout = BucketLayout("deeplens-x")
    written = [
        layout.output_uri.removeprefix("s3://deeplens-x/"),
        layout.labels_key,
        layout.prelabelled_key,
        layout.label_config_key,
        layout.ui_template_key,
        layout.labels_backup_key("job"),
        layout.labeling_input_key("job"),
        layout.report_key("run", "summary.json"),
        *layout.split_keys("token"),
        collect.DEFAULT_REPORTS_PREFIX,
        ledger.DEFAULT_LEDGER_KEY,
    ]
    source = Path(params_mod.__file__).parent / "operators" / "deploy.py"
    written += re.findall(r'key = f"([a-z]+/)', source.read_text())  # the device's function packages
    for key in written:
        assert key.split("/")[0] + "/" in PIPELINE_PREFIXES, key
    assert validate_params({"input_prefix": "photos/2026/"})["input_prefix"] == "photos/2026/"


@PROPERTY
@given(steps=st.lists(st.integers(1, 49), min_size=0, max_size=6, unique=True))
def test_increasing_steps_below_epochs_pass(steps):
    text = ",".join(map(str, sorted(steps)))
    assert validate_params({"lr_scheduler_step": text})["lr_scheduler_step"] == text


@PROPERTY
@given(steps=st.lists(st.integers(1, 60), min_size=2, max_size=6))
def test_steps_the_algorithm_refuses_are_refused(steps):
    assume(steps != sorted(set(steps)) or steps[-1] >= 50)
    assert refused({"lr_scheduler_step": ",".join(map(str, steps))}).startswith("params.lr_scheduler_step: ")


@PROPERTY
@given(names=st.lists(st.text(alphabet="aB _x", min_size=1, max_size=6), min_size=1, max_size=5))
def test_classes_that_differ_only_by_case_or_spaces_are_refused(names):
    keys = ["".join(n.split()).casefold() for n in names]
    clean = all(n == n.strip() and n.strip() for n in names)
    try:
        validate_params({"classes": names})
        accepted = True
    except ParamError:
        accepted = False
    assert accepted == (clean and len(set(keys)) == len(keys))


@PROPERTY
@given(host=st.text(alphabet="ab1.:-[] _\n", min_size=1, max_size=12))
def test_the_ssh_host_is_refused_at_the_start_exactly_when_the_deploy_step_would_refuse_it(host):
    try:
        ssh.SshTarget(host=host)
        deploys = True
    except ValueError:
        deploys = False
    try:
        validate_params({"ssh_host": host})
        starts = True
    except ParamError:
        starts = False
    assert starts == deploys


@PROPERTY
@given(user=st.text(alphabet="ab1.-_ \n@", min_size=1, max_size=8), key=st.text(max_size=8))
def test_ssh_user_and_key_file_follow_the_deploy_steps_rules(user, key):
    assert (validate_params_ok({"ssh_user": user})) == ssh.is_user(user)
    assert (validate_params_ok({"ssh_key_file": key})) == (key == "" or ssh.is_key_file(key))


def validate_params_ok(values: dict) -> bool:
    try:
        validate_params(values)
    except ParamError:
        return False
    return True


# ------------------------------------------------------------------ ECMA-262, as the JSON schema says


def _node() -> str | None:
    """node: the system's, or the one the playwright package ships to drive browsers."""
    found = shutil.which("node")
    if found:
        return found
    try:
        import playwright

        bundled = Path(playwright.__file__).parent / "driver" / "node"
    except ImportError:
        return None
    return str(bundled) if bundled.exists() else None


def test_every_pattern_means_the_same_in_ecma_262_and_in_python():
    """JSON schema patterns are ECMA-262 (compiled here with the "u" flag); Python's re applies them."""
    node = _node()
    if node is None:
        pytest.skip("no node (neither on PATH nor in the playwright package) to run ECMA-262 regexes")
    tricky = [
        "",
        "\n",
        "a\n",
        "é",
        "٣",
        " x",
        "x ",
        "-x",
        "../",
        "a..b",
        "10.0",
        "Ω",
        "\u2028",
        "x\ty",
        "\x85",
    ]
    samples = {}
    for spec in PARAM_SPECS.values():
        schema = spec.schema.get("items", spec.schema)
        if "pattern" in schema:
            default = spec.default[0] if isinstance(spec.default, list) else spec.default
            values = {
                str(default),
                *tricky,
                *(f"{default}{t}" for t in tricky),
                *(f"{t}{default}" for t in tricky),
            }
            samples[schema["pattern"]] = sorted(values)
    script = (
        "const s = JSON.parse(require('fs').readFileSync(0, 'utf8')); const out = {};"
        "for (const [p, vs] of Object.entries(s)) {"
        "  try { const r = new RegExp(p, 'u'); out[p] = vs.map((v) => r.test(v)); }"
        "  catch (e) { out[p] = String(e); } }"
        "process.stdout.write(JSON.stringify(out));"
    )
    result = subprocess.run(
        [node, "-e", script],
        input=json.dumps(samples),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    ecma = json.loads(result.stdout)
    for pattern, values in samples.items():
        assert isinstance(ecma[pattern], list), f"{pattern!r} is not ECMA-262: {ecma[pattern]}"
        python = [bool(re.search(pattern, v)) for v in values]
        differ = [v for v, a, b in zip(values, python, ecma[pattern], strict=True) if a != b]
        assert not differ, f"{pattern!r}: Python and ECMA-262 differ on {differ}"


def test_a_schema_alone_lets_nan_through():
    """Why validate_params checks it: NaN compares false with any bound, so jsonschema lets it through."""
    assert jsonschema.Draft202012Validator(PARAM_SPECS["learning_rate"].schema).is_valid(math.nan)


def test_a_class_named_like_a_key_of_the_devices_messages_is_refused():
    """The device publishes ``{label: prob, "detections": [...]}``; status and errors are messages too."""
    import importlib.util

    from deeplens_pipeline.params import RESERVED_CLASS_NAMES, ParamError, validate_params

    spec = importlib.util.spec_from_file_location(
        "deeplens_logic_keys",
        Path(__file__).resolve().parents[2] / "include" / "lambda" / "deeplens_logic.py",
    )
    logic = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(logic)
    assert tuple(logic.RESERVED_KEYS) == RESERVED_CLASS_NAMES
    with pytest.raises(ParamError, match="'Detections' is a key of the device's messages"):
        validate_params({"bucket": "deeplens-ok", "classes": ["blue_box", "Detections"]})


def test_spot_training_needs_a_wait_at_least_the_longest_training():
    from deeplens_pipeline.params import ParamError, validate_params

    base = {"bucket": "deeplens-ok", "max_runtime_hours": 12}
    assert validate_params({**base, "use_spot_training": True, "max_wait_hours": 12})["use_spot_training"]
    assert validate_params({**base, "max_wait_hours": 1})["max_wait_hours"] == 1  # unused without spot
    with pytest.raises(ParamError, match=r"params.max_wait_hours: with spot training it must be at least"):
        validate_params({**base, "use_spot_training": True, "max_wait_hours": 11})
