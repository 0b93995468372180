"""Typed AWS errors and the one place that maps botocore exceptions onto them.

Messages are written for an operator reading the UI or a log line: what failed, where, and what to do.
They never carry credentials: AWS messages pass through a redaction filter and credential errors use our
own text.
"""

from __future__ import annotations

import re
from typing import Any, TypeAlias

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOError,
    TokenRetrievalError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.parsers import ResponseParserError

from cml_cloud_manager.errors import AppError, NotFound, UpstreamError

CREDENTIALS_HELP = (
    "Configure AWS credentials with AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for "
    "temporary keys), a named profile (AWS_PROFILE), or an IAM role attached to the host."
)

# The codes botocore's standard retry mode treats as throttling; when one reaches us, retries are exhausted.
_THROTTLE_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "LimitExceededException",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)
_CREDENTIAL_CODES = frozenset(
    {
        "AuthFailure",
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "IncompleteSignature",
        "MissingAuthenticationToken",
        "ExpiredToken",
        "ExpiredTokenException",
        "RequestExpired",
    }
)
_PERMISSION_CODES = frozenset({"UnauthorizedOperation", "AccessDenied", "AccessDeniedException"})
_STATE_CODES = frozenset({"IncorrectInstanceState", "IncorrectState", "UnsupportedOperation"})

_USERINFO = re.compile(r"//[^/@]*@")
_INSTANCE_ID = re.compile(r"\bi-[0-9A-Za-z]+\b")
# Access key ids and 40-character secret keys: AWS does not echo secrets, but a proxy or emulator might.
_SECRETS = re.compile(r"\b(?:AKIA|ASIA|AIDA|AROA)[A-Z0-9]{16}\b|(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")


class AwsError(UpstreamError):
    """AWS refused or failed a call (after botocore's retries)."""

    code = "aws_error"

    @property
    def aws_code(self) -> str | None:
        value = self.detail.get("aws_code")
        return value if isinstance(value, str) else None


class AwsThrottled(AwsError):
    """AWS kept throttling after every retry; the caller should back off and try on a later run."""

    status_code = 503
    code = "aws_throttled"


class AwsAuthError(AwsError):
    """Credentials are missing, invalid, expired, or lack the IAM permission for the call."""

    code = "aws_auth_error"


class AwsUnreachable(AwsError):
    """The endpoint could not be reached or did not answer in time."""

    status_code = 504
    code = "aws_unreachable"


class InstanceStateConflict(AwsError):
    """The instance is in a state that does not allow the action (e.g. starting a terminated instance)."""

    status_code = 409
    code = "instance_state_conflict"


class ProvisioningFailed(AwsError):
    """Launching an instance failed; `detail` says whether one was created and whether it was cleaned up."""

    code = "provisioning_failed"


class InstanceNotFound(NotFound):
    code = "instance_not_found"

    @property
    def instance_ids(self) -> tuple[str, ...]:
        return tuple(self.detail.get("instance_ids", ()))


class ImageNotFound(NotFound):
    code = "image_not_found"


def redact(text: str) -> str:
    return _SECRETS.sub("[redacted]", text)


def instance_ids_in(message: str) -> list[str]:
    """Instance ids named in an EC2 error message ("The instance IDs 'i-1, i-2' do not exist")."""
    return _INSTANCE_ID.findall(message)


# What botocore raises from a call; ResponseParserError is not a BotoCoreError.
BotoError: TypeAlias = ClientError | BotoCoreError | ResponseParserError
BOTO_ERRORS = (ClientError, BotoCoreError, ResponseParserError)


def translate(exc: BotoError, *, region: str | None = None) -> AppError:
    """Map a botocore exception onto our typed errors. The caller raises the result `from exc`."""
    if isinstance(exc, ClientError):
        return _translate_client_error(exc, region)
    if isinstance(exc, ResponseParserError):
        # Seen when an emulator or a proxy answers with an HTML error page instead of an AWS response.
        return AwsError(
            f"The AWS endpoint{_where(region)} sent a response that is not an AWS answer",
            aws_code="ResponseParserError",
            region=region,
        )
    return _translate_botocore_error(exc, region)


def _where(region: str | None) -> str:
    return f" in {region}" if region else ""


def _translate_client_error(exc: ClientError, region: str | None) -> AppError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code") or "Unknown")
    aws_message = redact(str(error.get("Message") or "")).strip()
    operation = exc.operation_name
    attempts = int(exc.response.get("ResponseMetadata", {}).get("RetryAttempts", 0)) + 1
    detail: dict[str, Any] = {"aws_code": code, "operation": operation, "region": region}

    if code.startswith("InvalidInstanceID."):
        ids = instance_ids_in(aws_message)
        what = ", ".join(ids) if ids else "the requested instance"
        return InstanceNotFound(f"EC2 instance {what} not found{_where(region)}", instance_ids=ids, **detail)
    if code.startswith("InvalidAMIID."):
        return ImageNotFound(f"AMI not found{_where(region)}: {aws_message or code}", **detail)
    if code in _THROTTLE_CODES:
        return AwsThrottled(
            f"AWS throttled {operation}{_where(region)} ({code}) and still did after {attempts} attempts; "
            "the call will succeed once the request rate drops",
            attempts=attempts,
            **detail,
        )
    if code in _CREDENTIAL_CODES:
        # AWS's own text for signature errors may describe the signing inputs; use ours.
        reason = (
            "the request time is too far from AWS time; check the host clock"
            if code == "RequestExpired"
            else "AWS rejected the credentials (unknown, invalid or expired)"
        )
        return AwsAuthError(f"{operation}{_where(region)} failed: {reason} [{code}]. {CREDENTIALS_HELP}", **detail)
    if code in _PERMISSION_CODES:
        return AwsAuthError(
            f"The AWS identity in use is not allowed to call {operation}{_where(region)} [{code}]; "
            "grant it the IAM permission or use other credentials",
            **detail,
        )
    if code in _STATE_CODES:
        return InstanceStateConflict(f"{operation}{_where(region)}: {aws_message or code}", **detail)
    return AwsError(f"AWS {operation} failed{_where(region)}: {code}: {aws_message or 'no message'}", **detail)


def _translate_botocore_error(exc: BotoCoreError, region: str | None) -> AppError:
    kind = type(exc).__name__
    detail: dict[str, Any] = {"aws_code": kind, "region": region}
    kwargs: dict[str, Any] = getattr(exc, "kwargs", {})
    if isinstance(exc, NoCredentialsError):
        return AwsAuthError(f"No AWS credentials were found. {CREDENTIALS_HELP}", **detail)
    if isinstance(exc, PartialCredentialsError):
        return AwsAuthError(
            f"Incomplete AWS credentials from {kwargs.get('provider', 'a provider')}: "
            f"{kwargs.get('cred_var', 'a value')} is missing. {CREDENTIALS_HELP}",
            **detail,
        )
    if isinstance(exc, ProfileNotFound):
        return AwsAuthError(
            f"The AWS profile {kwargs.get('profile', '')!r} does not exist in the AWS config files. {CREDENTIALS_HELP}",
            **detail,
        )
    if isinstance(exc, CredentialRetrievalError | SSOError | TokenRetrievalError):
        # The provider's own message may quote a credential process's output; name only the provider.
        provider = kwargs.get("provider", "the configured provider")
        return AwsAuthError(f"Could not load AWS credentials from {provider} ({kind}). {CREDENTIALS_HELP}", **detail)
    if isinstance(exc, NoRegionError):
        return AwsError("No AWS region was given and none is configured (AWS_DEFAULT_REGION)", **detail)
    if isinstance(exc, BotoConnectionError | HTTPClientError):
        # Connect/read timeouts and refused connections, after botocore's retries.
        endpoint = _USERINFO.sub("//", str(kwargs.get("endpoint_url", "the AWS endpoint")))
        return AwsUnreachable(f"Could not reach {endpoint}{_where(region)} ({kind}); check network and proxy", **detail)
    return AwsError(f"AWS client error{_where(region)} ({kind}): {redact(str(exc))}", **detail)
