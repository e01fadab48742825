"""The run's evaluation report: drawn where the data is, written to S3, linked from the task.

``EvaluationReportOperator`` reads what the evaluation tasks left in the bucket (the holdout
manifest, each model's ``.out`` answers, the holdout images), draws the report
(``deeplens_pipeline.evaluation_report``) and writes ``reports/<run>/index.html`` with its pictures
beside it. It runs whether the gate deployed or kept the current model (give it
``trigger_rule=TriggerRule.NONE_FAILED``).

The task's page in the Airflow UI shows an "Evaluation report" button (``EvaluationReportLink``):

- against AWS, the S3 console's page of ``index.html``
  (``https://<region>.console.aws.amazon.com/s3/object/<bucket>?region=<region>&prefix=<key>``), where
  *Open* shows the page. A presigned URL is not used: it is signed when the task ends with the
  worker's temporary role credentials and stops working when they expire (hours at most on MWAA),
  while the link stays on the task for as long as the run is kept; the console URL never expires
  and asks the reader's own IAM rights, not the worker's. The page embeds its pictures, so it shows
  whole when opened that way.
- against the emulator (the connection has an ``endpoint_url``), which has no console, a presigned
  URL of the object on the endpoint, valid 7 days (SigV4's longest). Its plain object URL would not
  do: like S3, the emulator refuses an unsigned read of a private object (403).

The link's URL is the task's ``report_url`` XCom: Airflow 3 stores the link when the task ends (in
XCom, read back by the UI, so the link class needs no registration there); Airflow 2 computes it in
the webserver, which only builds link classes registered by a plugin: ``plugins/deeplens_links.py``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from deeplens_pipeline import evaluation
from deeplens_pipeline.airflow_compat import AirflowFailException, BaseOperatorLink, XCom
from deeplens_pipeline.groundtruth import parse_manifest
from deeplens_pipeline.layout import split_s3_uri
from deeplens_pipeline.operators.base import PipelineOperator, run_config

REPORT_NAME = "index.html"
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".png": "image/png", ".jpg": "image/jpeg"}
DECISIONS = ("deploy", "keep")
_CONSOLE_DOMAINS = {"cn-": "console.amazonaws.cn", "us-gov-": "console.amazonaws-us-gov.com"}


def console_url(bucket: str, key: str, region: str) -> str:
    """The S3 console's page of one object (its *Open* button shows it)."""
    domain = next(
        (d for prefix, d in _CONSOLE_DOMAINS.items() if region.startswith(prefix)),
        f"{region}.console.aws.amazon.com",
    )
    return (
        f"https://{domain}/s3/object/{quote(bucket, safe='')}"
        f"?region={quote(region, safe='')}&bucketType=general&prefix={quote(key, safe='')}"
    )


EMULATOR_LINK_SECONDS = 7 * 24 * 3600
"""How long the emulator's presigned report link works (the longest a SigV4 presigned URL may)."""


def object_url(client: Any, bucket: str, key: str, region: str, endpoint_url: str | None) -> str:
    """Where a person opens ``s3://bucket/key``: with an endpoint (the emulator), a presigned URL on
    it; else the S3 console's page of the object."""
    if endpoint_url:
        return client.generate_presigned_url(
            "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=EMULATOR_LINK_SECONDS
        )
    return console_url(bucket, key, region)


def check_gate(gate: Any) -> dict[str, Any] | None:
    """The gate's decision as the report expects it: ``None`` (no gate ran), or a dict with
    ``decision`` ("deploy" or "keep") and ``reason`` (text) and any other figures to show."""
    if gate is None or gate == {}:
        return None
    if not isinstance(gate, dict):
        raise AirflowFailException(f"gate: expected the gate's decision dict, not {type(gate).__name__}")
    if gate.get("decision") not in DECISIONS:
        raise AirflowFailException(f"gate: decision must be one of {DECISIONS}, not {gate.get('decision')!r}")
    if not isinstance(gate.get("reason"), str):
        raise AirflowFailException("gate: reason must be text")
    return gate


def _check_evaluation(name: str, value: Any, *, required: bool) -> dict[str, Any] | None:
    if not value or (isinstance(value, dict) and value.get("no_current_model")):
        if required:
            raise AirflowFailException(f"{name}: no evaluation result (did the {name} evaluation run?)")
        return None
    if not isinstance(value, dict):
        raise AirflowFailException(f"{name}: expected an evaluation result dict, not {type(value).__name__}")
    missing = [k for k in ("map", "per_class", "predictions_uri", "holdout_manifest") if k not in value]
    if missing:
        raise AirflowFailException(f"{name}: the evaluation result lacks {missing}")
    return value


class EvaluationReportLink(BaseOperatorLink):
    """The "Evaluation report" button of the report task: its ``report_url`` XCom."""

    name = "Evaluation report"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        value = XCom.get_value(ti_key=ti_key, key="return_value")
        if isinstance(value, dict):
            return str(value.get("report_url") or "")
        return ""


class EvaluationReportOperator(PipelineOperator):
    """Write the run's evaluation report to ``reports/<run>/index.html``; return
    ``{"report_uri", "report_url"}``.

    ``candidate`` and ``current`` are ``EvaluateModelOperator`` results (``current`` may be None,
    empty, or ``evaluation.no_current_model()``'s result, whose reason the report shows); ``gate``
    is the gate's decision dict (see :func:`check_gate`) or None. The contact sheet shows the
    ``max_images`` worst holdout images with the boxes scored at or above
    params.detection_threshold (what the device would report).
    """

    template_fields = ("candidate", "current", "gate")
    operator_extra_links = (EvaluationReportLink(),)
    ui_color = "#e8f0fe"

    def __init__(
        self,
        *,
        candidate: Any,
        current: Any = None,
        gate: Any = None,
        max_images: int = 24,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if not isinstance(max_images, int) or max_images < 1:
            raise ValueError(f"max_images must be a positive integer, not {max_images!r}")
        self.candidate = candidate
        self.current = current
        self.gate = gate
        self.max_images = max_images

    def execute(self, context: Any) -> dict[str, Any]:
        from deeplens_pipeline import evaluation_report  # matplotlib and Pillow: when the task runs

        config = run_config(context)
        candidate = _check_evaluation("candidate", self.candidate, required=True)
        current = _check_evaluation("current", self.current, required=False)
        no_current_reason = None
        if current is None and isinstance(self.current, dict):
            no_current_reason = self.current.get("reason")  # evaluation.no_current_model()'s
        gate = check_gate(self.gate)
        assert candidate is not None
        manifest = candidate["holdout_manifest"]
        if current and current["holdout_manifest"] != manifest:
            raise AirflowFailException(
                f"current: evaluated on {current['holdout_manifest']}, the candidate on {manifest}: "
                "the report compares models on one holdout"
            )
        hook = self.s3(config)
        client = hook.get_conn()
        bucket, key = split_s3_uri(manifest)
        holdout = list(
            parse_manifest(
                hook.read_key(key, bucket).splitlines(),
                config["label_attribute"],
                config["classes"],
                manifest,
            )
        )
        if not holdout:
            raise AirflowFailException(f"{manifest} lists no labelled image: nothing to report on")
        models = {"candidate": candidate, **({"current": current} if current else {})}
        detections = {
            label: self._detections(client, holdout, result, len(config["classes"]))
            for label, result in models.items()
        }

        def read_image(uri: str) -> bytes | None:
            image_bucket, image_key = split_s3_uri(uri)
            try:
                return client.get_object(Bucket=image_bucket, Key=image_key)["Body"].read()
            except client.exceptions.ClientError as err:
                self.log.warning("Holdout image %s not readable for the contact sheet: %s", uri, err)
                return None

        files = evaluation_report.build_report(
            run_id=context["run_id"],
            classes=config["classes"],
            holdout=holdout,
            candidate=candidate,
            current=current,
            gate=gate,
            detections=detections,
            read_image=read_image,
            threshold=float(config["detection_threshold"]),
            max_images=self.max_images,
            no_current_reason=no_current_reason,
        )
        layout = self.layout(config)
        for name, body in files.items():
            # The page last: a reader who follows the link never finds it before its pictures.
            if name != REPORT_NAME:
                self._put(client, layout.bucket, layout.report_key(context["run_id"], name), body)
        page_key = layout.report_key(context["run_id"], REPORT_NAME)
        self._put(client, layout.bucket, page_key, files[REPORT_NAME])
        url = object_url(client, layout.bucket, page_key, config["region"], hook.conn_config.endpoint_url)
        self.log.info("Evaluation report: %s (%s)", layout.uri(page_key), url)
        return {"report_uri": layout.uri(page_key), "report_url": url}

    def _detections(
        self, client: Any, holdout: list[Any], result: dict[str, Any], num_classes: int
    ) -> dict[str, list[evaluation.Detection]]:
        found = {}
        for image in holdout:
            uri = evaluation.prediction_uri(image.source_ref, result["predictions_uri"])
            bucket, key = split_s3_uri(uri)
            try:
                body = client.get_object(Bucket=bucket, Key=key)["Body"].read()
            except client.exceptions.NoSuchKey:
                raise AirflowFailException(
                    f"{result.get('label', 'model')}: {uri} is missing (the transform job "
                    f"{result.get('transform_job')} wrote no answer for {image.source_ref})"
                ) from None
            found[image.source_ref] = evaluation.parse_prediction(body, num_classes, uri)
        return found

    @staticmethod
    def _put(client: Any, bucket: str, key: str, body: bytes) -> None:
        suffix = key[key.rfind(".") :]
        client.put_object(
            Bucket=bucket,
            Key=key,
            Body=body,
            ContentType=CONTENT_TYPES.get(suffix, "application/octet-stream"),
        )
