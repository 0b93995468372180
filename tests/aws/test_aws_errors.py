"""Error translation, retries on throttling and credential failures, through botocore's real machinery.

moto never throttles and accepts any key, so a loopback EC2 stub answers the scripted errors.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    CredentialRetrievalError,
    EndpointConnectionError,
    NoCredentialsError,
    PartialCredentialsError,
    ProfileNotFound,
)
from botocore.parsers import ResponseParserError
from botocore.retries.bucket import TokenBucket
from botocore.retries.standard import ExponentialBackoff

from cml_cloud_manager.aws import ec2
from cml_cloud_manager.aws.errors import (
    CREDENTIALS_HELP,
    AwsAuthError,
    AwsError,
    AwsThrottled,
    AwsUnreachable,
    ImageNotFound,
    InstanceNotFound,
    InstanceStateConflict,
    translate,
)
from cml_cloud_manager.aws.session import AwsClients, AwsConfig
from cml_cloud_manager.errors import NotFound, UpstreamError

from .conftest import Ec2Stub

REGION = "us-east-1"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
ACCESS_KEY = "AKIAIOSFODNN7EXAMPLE"


def client_error(code: str, message: str = "", operation: str = "DescribeInstances", retries: int = 0) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {"RetryAttempts": retries}},  # type: ignore[typeddict-item]
        operation,
    )


@pytest.fixture
def no_backoff_sleep(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Keep botocore's retry decisions but skip its sleeps; records each computed delay."""
    delays: list[float] = []
    original = ExponentialBackoff.delay_amount

    def record(self: ExponentialBackoff, context: Any) -> float:
        delays.append(original(self, context))
        return 0.0

    monkeypatch.setattr(ExponentialBackoff, "delay_amount", record)
    yield delays


# --- translate -------------------------------------------------------------------------------------------


def test_unknown_instance_ids_become_instance_not_found() -> None:
    ids = ("i-0123456789abcdef0", "i-0123456789abcdef1")
    error = translate(client_error("InvalidInstanceID.NotFound", f"The instance IDs '{', '.join(ids)}' do not exist"))

    assert isinstance(error, InstanceNotFound) and isinstance(error, NotFound)
    assert error.instance_ids == ids
    assert error.status_code == 404


def test_malformed_instance_id_becomes_instance_not_found() -> None:
    assert isinstance(translate(client_error("InvalidInstanceID.Malformed", 'Invalid id: "x"')), InstanceNotFound)


def test_unknown_ami_becomes_image_not_found() -> None:
    assert isinstance(
        translate(client_error("InvalidAMIID.NotFound", "The image id '[ami-1]' does not exist")),
        ImageNotFound,
    )


@pytest.mark.parametrize(
    "code", ["Throttling", "RequestLimitExceeded", "ThrottlingException", "TooManyRequestsException"]
)
def test_throttling_codes_become_aws_throttled(code: str) -> None:
    error = translate(client_error(code, "Rate exceeded", retries=5), region=REGION)

    assert isinstance(error, AwsThrottled) and isinstance(error, AwsError) and isinstance(error, UpstreamError)
    assert error.detail["attempts"] == 6
    assert error.aws_code == code
    assert f"DescribeInstances in {REGION}" in error.message and "6 attempts" in error.message


@pytest.mark.parametrize(
    "code",
    [
        "AuthFailure",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
    ],
)
def test_credential_codes_become_auth_errors_that_say_how_to_configure(code: str) -> None:
    # SignatureDoesNotMatch texts can describe the signing inputs; none of it reaches our message.
    error = translate(client_error(code, f"bad signature for {ACCESS_KEY} with {SECRET}"))

    assert isinstance(error, AwsAuthError)
    assert CREDENTIALS_HELP in error.message
    assert SECRET not in error.message and ACCESS_KEY not in error.message


def test_clock_skew_points_at_the_clock() -> None:
    error = translate(client_error("RequestExpired", "Request has expired."))

    assert isinstance(error, AwsAuthError) and "clock" in error.message


def test_missing_iam_permission_is_an_auth_error_naming_the_operation() -> None:
    error = translate(client_error("UnauthorizedOperation", "You are not authorized", operation="RunInstances"))

    assert isinstance(error, AwsAuthError)
    assert "not allowed to call RunInstances" in error.message


def test_wrong_instance_state_is_a_conflict() -> None:
    error = translate(
        client_error("IncorrectInstanceState", "The instance is not in a state from which it can be started.")
    )

    assert isinstance(error, InstanceStateConflict) and error.status_code == 409


def test_other_codes_keep_the_aws_message_but_redact_keys() -> None:
    error = translate(client_error("InvalidParameterValue", f"Value {ACCESS_KEY} / {SECRET} is invalid"), region=REGION)

    assert type(error) is AwsError
    assert "InvalidParameterValue" in error.message and "is invalid" in error.message
    assert ACCESS_KEY not in error.message and SECRET not in error.message


@pytest.mark.parametrize(
    ("exc", "expected", "text"),
    [
        (NoCredentialsError(), AwsAuthError, "No AWS credentials were found"),
        (
            PartialCredentialsError(provider="env", cred_var="AWS_SECRET_ACCESS_KEY"),
            AwsAuthError,
            "AWS_SECRET_ACCESS_KEY",
        ),
        (ProfileNotFound(profile="cml-prod"), AwsAuthError, "'cml-prod' does not exist"),
        (
            CredentialRetrievalError(provider="custom-process", error_msg=SECRET),
            AwsAuthError,
            "custom-process",
        ),
        (
            EndpointConnectionError(endpoint_url="https://user:pw@ec2.example"),
            AwsUnreachable,
            "https://ec2.example",
        ),
        (ConnectTimeoutError(endpoint_url="https://ec2.example"), AwsUnreachable, "Could not reach"),
        (ResponseParserError("<html>oops</html>"), AwsError, "not an AWS answer"),
    ],
)
def test_botocore_errors(exc: Exception, expected: type[Exception], text: str) -> None:
    error = translate(exc, region=REGION)  # type: ignore[arg-type]

    assert type(error) is expected
    assert text in error.message
    assert SECRET not in error.message and "pw@" not in error.message
    if expected is AwsAuthError:
        assert CREDENTIALS_HELP in error.message


# --- through botocore, against the loopback stub ---------------------------------------------------------


@pytest.mark.parametrize("code", ["RequestLimitExceeded", "Throttling"])
async def test_throttling_is_retried_until_it_succeeds(
    code: str, ec2_stub: Ec2Stub, stub_clients: Callable[..., AwsClients], no_backoff_sleep: list[float]
) -> None:
    ec2_stub.fail(2, code)

    assert await ec2.describe_instances(stub_clients(max_attempts=3), REGION) == []
    assert ec2_stub.requests == 3
    assert len(no_backoff_sleep) == 2
    assert all(0 <= delay <= 2 for delay in no_backoff_sleep)  # throttling backoff: up to 1 s, then 2 s


@pytest.mark.parametrize("mode", ["standard", "adaptive"])
async def test_throttling_past_max_attempts_raises_aws_throttled(
    mode: str,
    ec2_stub: Ec2Stub,
    stub_clients: Callable[..., AwsClients],
    no_backoff_sleep: list[float],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Adaptive mode also waits in a client-side token bucket after throttling: count, don't sleep.
    bucket_waits: list[int] = []

    def acquire(self: TokenBucket, amount: int = 1, block: bool = True) -> bool:
        bucket_waits.append(amount)
        return True

    monkeypatch.setattr(TokenBucket, "acquire", acquire)
    ec2_stub.fail(10, "RequestLimitExceeded")

    with pytest.raises(AwsThrottled) as caught:
        await ec2.describe_instances(stub_clients(max_attempts=4, retry_mode=mode), REGION)

    assert ec2_stub.requests == 4
    assert len(no_backoff_sleep) == 3
    assert (len(bucket_waits) > 0) == (mode == "adaptive")
    assert caught.value.detail["attempts"] == 4
    assert caught.value.status_code == 503
    assert "RequestLimitExceeded" in caught.value.message and REGION in caught.value.message


async def test_rejected_credentials_raise_auth_error_without_leaking_them(
    ec2_stub: Ec2Stub, stub_clients: Callable[..., AwsClients]
) -> None:
    ec2_stub.fail(1, "AuthFailure", status=401, message="AWS was not able to validate the provided access credentials")

    with pytest.raises(AwsAuthError) as caught:
        await ec2.describe_instances(stub_clients(access_key_id=ACCESS_KEY, secret_access_key=SECRET), REGION)

    assert ec2_stub.requests == 1  # not retried: more attempts cannot fix credentials
    assert "AuthFailure" in caught.value.message and "AWS_ACCESS_KEY_ID" in caught.value.message
    assert SECRET not in str(caught.value) and SECRET not in repr(caught.value.detail)


async def test_missing_credentials_raise_auth_error_before_any_request(
    ec2_stub: Ec2Stub, stub_clients: Callable[..., AwsClients], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")

    with pytest.raises(AwsAuthError, match="No AWS credentials were found") as caught:
        await ec2.describe_instances(stub_clients(access_key_id=None, secret_access_key=None), REGION)

    assert "AWS_PROFILE" in caught.value.message and "IAM role" in caught.value.message
    assert ec2_stub.requests == 0


async def test_unknown_profile_raises_auth_error(stub_clients: Callable[..., AwsClients]) -> None:
    clients = stub_clients(access_key_id=None, secret_access_key=None, profile="does-not-exist")

    with pytest.raises(AwsAuthError, match="'does-not-exist' does not exist"):
        await ec2.describe_instances(clients, REGION)


async def test_unreachable_endpoint_raises_aws_unreachable(no_backoff_sleep: list[float]) -> None:
    config = AwsConfig(endpoint_url="http://127.0.0.1:9", access_key_id="k", secret_access_key="s", max_attempts=2)
    async with AwsClients(config) as clients:
        with pytest.raises(AwsUnreachable, match=r"Could not reach http://127\.0\.0\.1:9"):
            await ec2.describe_instances(clients, REGION)
