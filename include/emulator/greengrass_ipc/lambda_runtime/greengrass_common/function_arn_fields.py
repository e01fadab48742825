"""Lambda function ARNs split into region, account, name and qualifier."""

import re

_ARN = re.compile(
    r"^arn:(?P<partition>aws[a-z-]*):lambda:(?P<region>[a-z0-9-]*):(?P<account>\d{12}|):function:"
    r"(?P<name>[a-zA-Z0-9_-]+)(?::(?P<qualifier>\$LATEST|[a-zA-Z0-9_-]+))?$"
)


class FunctionArnFields:
    """The parts of a (qualified or unqualified) Lambda function ARN."""

    def __init__(self, function_arn_string):
        match = _ARN.match(function_arn_string or "")
        if not match:
            raise ValueError("Cannot parse given string as a function ARN.")
        self.partition = match.group("partition")
        self.region = match.group("region")
        self.account_id = match.group("account")
        self.name = match.group("name")
        self.qualifier = match.group("qualifier")

    @property
    def unqualified_arn(self):
        return f"arn:{self.partition}:lambda:{self.region}:{self.account_id}:function:{self.name}"

    @staticmethod
    def build_function_arn(unqualified_arn, qualifier=None):
        return f"{unqualified_arn}:{qualifier}" if qualifier else unqualified_arn

    def to_arn_string(self):
        return self.build_function_arn(self.unqualified_arn, self.qualifier)
