"""The run's Params: checked by the first task, by Airflow at trigger time, read by the operators."""

from types import SimpleNamespace

import pytest

from deeplens_pipeline.airflow_compat import DAG, AirflowFailException, Param
from deeplens_pipeline.operators.base import environment_id
from deeplens_pipeline.operators.config import CheckParamsOperator
from deeplens_pipeline.operators.deploy import DeployToDeviceOperator
from deeplens_pipeline.params import PARAM_SPECS

RUN_ID = "manual__2026-11-26T05:00:00+00:00"


def context(**params):
    return {
        "run_id": RUN_ID,
        "dag_run": SimpleNamespace(dag_id="deeplens_object_detection"),
        "params": params,
    }


@pytest.fixture
def environment(monkeypatch):
    monkeypatch.setenv("DEEPLENS_ENVIRONMENT", "test-environment")
    assert environment_id() == "test-environment"


def test_check_params_fails_at_once_naming_the_parameter_and_the_rule():
    operator = CheckParamsOperator(task_id="check_params")
    with pytest.raises(
        AirflowFailException,
        match=r"^params\.bucket: must not contain two adjacent periods \('\.\.'\) \(S3's bucket",
    ):
        operator.execute(context(bucket="deeplens-a..b"))
    with pytest.raises(
        AirflowFailException, match=r"^params\.learning_rate: must be a finite number \(got nan\)"
    ):
        operator.execute(context(learning_rate=float("nan")))


def test_check_params_returns_what_the_operators_read(environment):
    """A cleared optional field (null from the form) is the empty default again."""
    result = CheckParamsOperator(task_id="check_params").execute(
        context(bucket="deeplens-form-check", image_source=None, ssh_host=None, ssh_key_file=None)
    )
    config = result["params"]
    assert config["bucket"] == "deeplens-form-check"
    assert config["image_source"] == config["ssh_host"] == config["ssh_key_file"] == ""
    assert result["job_names"]["training_job"].startswith("deeplens-")


@pytest.fixture(scope="module")
def served_params():
    """The Params as Airflow's API server holds them: the DAG's, serialized and read back."""
    try:
        from airflow.serialization.serialized_objects import DagSerialization
    except ImportError:  # before Airflow 3.2
        from airflow.serialization.serialized_objects import SerializedDAG as DagSerialization

    with DAG(
        "params_probe", params={n: Param(s.default, **s.param_arguments()) for n, s in PARAM_SPECS.items()}
    ) as dag:
        pass
    return DagSerialization.from_dict(DagSerialization.to_dict(dag)).params


def trigger(served_params, conf):
    """What a trigger (form, REST API, CLI) runs before it creates the run."""
    if hasattr(served_params, "deep_merge"):
        return served_params.deep_merge(conf).validate()
    import copy  # before Airflow 3.1: the run's Params are a copy of the DAG's, updated with conf

    params = copy.deepcopy(served_params)
    params.update(conf)
    return params.validate()


@pytest.mark.parametrize(
    ("conf", "rule"),
    [
        ({"bucket": "my-bucket"}, PARAM_SPECS["bucket"].rule),
        ({"bucket": "deeplens-ok\n"}, PARAM_SPECS["bucket"].rule),
        ({"input_prefix": "state/"}, PARAM_SPECS["input_prefix"].rule),
        ({"lr_scheduler_step": "0,10"}, PARAM_SPECS["lr_scheduler_step"].rule),
        ({"ssh_host": "-oProxyCommand=x"}, PARAM_SPECS["ssh_host"].rule),
        ({"thing_name": "deeplens_x\n"}, PARAM_SPECS["thing_name"].rule),
    ],
)
def test_airflow_refuses_a_bad_value_at_trigger_time_with_the_rule_in_words(served_params, conf, rule):
    from airflow.exceptions import ParamValidationError

    (name,) = conf
    with pytest.raises(ParamValidationError) as err:
        trigger(served_params, conf)
    detail = str(err.value)  # the form shows all of it
    assert detail.startswith(f'Invalid input for param {name}: "{rule}" was expected') or detail.startswith(
        f"Invalid input for param {name}: '{rule}' was expected"
    )
    assert "does not match" not in detail and "(?!" not in detail


def test_airflow_accepts_the_forms_defaults_and_cleared_optional_fields(served_params):
    values = trigger(served_params, {"bucket": "deeplens-form-check", "image_source": None, "ssh_host": None})
    assert values["image_source"] is None and values["bucket"] == "deeplens-form-check"


def test_airflow_refuses_a_cleared_required_field(served_params):
    from airflow.exceptions import ParamValidationError

    with pytest.raises(
        ParamValidationError, match="Invalid input for param bucket: None is not of type 'string'"
    ):
        trigger(served_params, {"bucket": None})


def test_a_native_template_turns_a_host_into_a_number():
    """Why the deploy step reads the SSH settings from the checked run config, not from templates.

    Airflow's native rendering (``render_template_as_native``) is Jinja's native environment.
    """
    from jinja2.nativetypes import NativeEnvironment

    template = NativeEnvironment().from_string("{{ params.ssh_host }}")
    assert template.render(params={"ssh_host": "10.0"}) == 10.0


def deploy_operator(**kwargs):
    return DeployToDeviceOperator(
        task_id="deploy_to_device",
        method="ssh",
        thing_name="deeplens_abc",
        model_s3_uri="s3://deeplens-x/output/deploy-model.tar.gz",
        lambda_version_arn="arn:aws:lambda:us-east-1:123456789012:function:deeplens-x:1",
        model_name="deploy_deeplens_model",
        labels=["a", "b"],
        image_shape=512,
        aws_conn_id=None,
        region_name="us-east-1",
        **kwargs,
    )


def test_the_deploy_step_takes_the_ssh_settings_from_the_checked_run_config_as_text():
    operator = deploy_operator()
    operator._ssh_from_params(
        context(deploy_method="ssh", ssh_host="10.0", ssh_user="123", ssh_key_file=None)
    )
    assert (operator.ssh_host, operator.ssh_user, operator.ssh_key_file) == ("10.0", "123", "")
    target = operator.build_deployer().target
    assert (target.host, target.user, target.key_file) == ("10.0", "123", None)


def test_ssh_settings_given_to_the_deploy_step_win_over_the_params():
    operator = deploy_operator(ssh_host="192.168.1.20", ssh_key_file="/keys/d")
    operator._ssh_from_params(context(deploy_method="ssh", ssh_host="10.0"))
    target = operator.build_deployer().target
    assert (target.host, target.user, target.key_file) == ("192.168.1.20", "aws_cam", "/keys/d")
