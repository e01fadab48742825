import pytest

from deeplens_pipeline.params import PARAM_SPECS, ParamError, param_warnings, validate_params


def test_defaults_are_valid():
    values = validate_params({})
    assert values["image_shape"] == 512
    assert values["learning_rate"] == 0.0005
    assert values["lr_scheduler_step"] == "5,10,25,40"
    assert set(values) == set(PARAM_SPECS)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("bucket", "my-bucket", "must begin with 'deeplens-'"),
        ("bucket", "deeplens-UPPER", "must begin with 'deeplens-'"),
        ("image_shape", 400, "400 is not one of"),
        ("classes", [], "should be non-empty"),
        ("classes", ["a", "a"], "non-unique"),
        ("role_arn", "deeplens-role", "IAM role ARN"),
        ("label_attribute", "boxes-metadata", "must not end in '-metadata'"),
        ("thing_name", "camera", "deeplens_<uuid>"),
        ("lambda_function_name", "my-fn", "must begin with 'deeplens-'"),
        ("training_mode", "both", "is not one of"),
        ("workers_per_image", 10, "maximum"),
        ("learning_rate", 0, "less than or equal to the minimum"),
    ],
)
def test_bad_values_name_the_parameter(name, value, fragment):
    with pytest.raises(ParamError) as err:
        validate_params({name: value})
    assert str(err.value).startswith(f"params.{name}:")
    assert fragment in str(err.value)


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


def test_every_spec_has_help_and_a_section():
    for name, spec in PARAM_SPECS.items():
        assert spec.description and spec.section, name


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
    with pytest.raises(ParamError, match=r"^params\.lambda_runtime: .* is not one of"):
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
