"""Repack the trained model for the device: rename, fix the graph, upload beside the original."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

from deeplens_pipeline.airflow_compat import AirflowFailException
from deeplens_pipeline.layout import split_s3_uri
from deeplens_pipeline.operators.base import PipelineOperator, run_config, xcom_outputs

DEPLOY_ARCHIVE = "deploy-model.tar.gz"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RepackModelOperator(PipelineOperator):
    """Turn SageMaker's ``model.tar.gz`` into the archive a DeepLens loads.

    Downloads the artefact, renames ``model_algo_1-*`` to the configured prefix, adds the deploy
    graph (``deploy_<prefix>-symbol.json``, params copied byte for byte) with the pure-Python
    ``model_fix`` (no mxnet in Airflow), and uploads ``deploy-model.tar.gz`` beside the original.
    The original is never lost: when ``replace_original_model`` is set (the original guide's way),
    a backup ``model.tar.gz.orig`` is copied first. A rerun with the same result uploads nothing.
    """

    template_fields = ("model",)

    def __init__(self, *, model: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model = model

    def execute(self, context: Any) -> dict[str, Any]:
        from model_fix import FixOptions, ModelFixError, repack_model_archive

        config = run_config(context)
        s3 = self.s3(config)
        source_uri = self.model["model_artifact"]
        bucket, key = split_s3_uri(source_uri)
        target_key = f"{key.rsplit('/', 1)[0]}/{DEPLOY_ARCHIVE}" if "/" in key else DEPLOY_ARCHIVE
        options = FixOptions(
            nms_threshold=config["nms_threshold"],
            num_classes=len(config["classes"]),
            data_shape=config["image_shape"],
        )
        with tempfile.TemporaryDirectory(prefix="deeplens-repack-") as tmp:
            original = Path(tmp) / "model.tar.gz"
            self.log.info("Downloading %s", source_uri)
            s3.get_key(key, bucket).download_file(str(original))
            repacked = Path(tmp) / DEPLOY_ARCHIVE
            try:
                result = repack_model_archive(original, repacked, config["model_prefix"], options)
            except ModelFixError as err:
                # A model that breaks a rule stays broken: fail at once, never retried.
                raise AirflowFailException(f"{source_uri}: {err}") from None
            digest = _sha256(repacked)
            target_uri = f"s3://{bucket}/{target_key}"
            existing = s3.head_object(target_key, bucket) if s3.check_for_key(target_key, bucket) else None
            if existing and existing.get("Metadata", {}).get("sha256") == digest:
                self.log.info("%s is already this model (sha256 %s): nothing to upload", target_uri, digest)
            else:
                # boto3's transfer manager (multipart for large models), with the digest as metadata.
                s3.get_conn().upload_file(
                    str(repacked),
                    bucket,
                    target_key,
                    ExtraArgs={
                        "Metadata": {"sha256": digest, "source": source_uri},
                        "ContentType": "application/gzip",
                    },
                )
                self.log.info("Uploaded %s (%d bytes)", target_uri, repacked.stat().st_size)
            backup_uri = None
            if config["replace_original_model"]:
                backup_key = f"{key}.orig"
                if not s3.check_for_key(backup_key, bucket):
                    s3.copy_object(key, backup_key, bucket, bucket)
                    self.log.info("Kept the original as s3://%s/%s", bucket, backup_key)
                s3.load_file(str(repacked), key, bucket, replace=True)
                backup_uri = f"s3://{bucket}/{backup_key}"
        return xcom_outputs(
            {
                "uploaded": existing is None or existing.get("Metadata", {}).get("sha256") != digest,
                "deploy_model_uri": target_uri,
                "model_name": result.deploy_model_name,
                "num_classes": result.num_classes,
                "sha256": digest,
                "original_uri": source_uri,
                "original_backup_uri": backup_uri,
            }
        )
