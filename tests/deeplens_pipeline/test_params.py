import pytest

from deeplens_pipeline.params import PARAM_SPECS, ParamError, validate_params


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
        validate_params({"region": "eu-west-1"})
    with pytest.raises(ParamError, match="params.lr_scheduler_step"):
        validate_params({"epochs": 20})
    with pytest.raises(ParamError, match="params.tuning_learning_rate_min"):
        validate_params({"tuning_learning_rate_min": 0.1})
    with pytest.raises(ParamError, match="params.tuning_max_parallel_jobs"):
        validate_params({"tuning_max_jobs": 1, "tuning_max_parallel_jobs": 2})


def test_every_spec_has_help_and_a_section():
    for name, spec in PARAM_SPECS.items():
        assert spec.description and spec.section, name
