"""The emulator's S3 answers a browser's cross-origin request only as the bucket's CORS rules allow."""

import boto3
import requests

ORIGIN = "http://127.0.0.1:8080"


def _get(url):
    return requests.get(url, headers={"Origin": ORIGIN}, timeout=10)


def test_a_bucket_without_a_cors_rule_gives_a_browser_no_access_and_one_with_it_does(emulator):
    s3 = boto3.client("s3", endpoint_url=emulator.url, region_name="us-east-1")
    s3.create_bucket(Bucket="deeplens-cors-check")
    s3.put_object(Bucket="deeplens-cors-check", Key="a.jpg", Body=b"jpeg")
    url = s3.generate_presigned_url("get_object", Params={"Bucket": "deeplens-cors-check", "Key": "a.jpg"})
    # No rule: the object is served, but without Access-Control-Allow-Origin the browser refuses it.
    assert "Access-Control-Allow-Origin" not in _get(url).headers
    s3.put_bucket_cors(
        Bucket="deeplens-cors-check",
        CORSConfiguration={"CORSRules": [{"AllowedMethods": ["GET"], "AllowedOrigins": ["*"]}]},
    )
    assert _get(url).headers.get("Access-Control-Allow-Origin") in (ORIGIN, "*")
