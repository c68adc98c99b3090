"""The fake AWS account that local mode and the tests emulate: one home for its id, region and
credentials, so no module restates them (plain constants: safe to import before boto3 is configured)."""

from __future__ import annotations

REGION = "us-east-1"
ACCOUNT = "123456789012"

# moto's dummy credentials: boto3 needs some, and they can reach no real account.
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
}

# Settings that only local mode adds: quiet, metric-free handlers with fake credentials.
LOCAL_ENV = {
    "AWS_DEFAULT_REGION": REGION,
    **CREDENTIALS,
    "POWERTOOLS_METRICS_DISABLED": "true",
    "POWERTOOLS_TRACE_DISABLED": "true",
    # Delivery here is one thread: a commit that finds annotation pending fails at once and is retried
    # after the next round has drained the annotate queue, instead of sleeping.
    "ANNOTATION_WAIT_S": "0",
}
