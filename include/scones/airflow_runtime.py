"""The one place in include/ that touches Airflow: settings with Variable overrides, and every provider hook, bound
to the project's AWS connection. Imported inside task bodies only, never at DAG parse time.

The connection (`aws_default`, or SCONES_AWS_CONN_ID) is the only thing that tells AWS from the local cloud.
"""

from __future__ import annotations

from typing import Any

from include.scones.settings import Settings, load, parse_time


def aws_conn_id() -> str:
    return parse_time().aws_conn_id


def settings() -> Settings:
    from airflow.sdk import Variable

    return load(variables=lambda name: Variable.get(name, default=None))


def s3_hook() -> Any:
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    return S3Hook(aws_conn_id=aws_conn_id())


def sagemaker_hook() -> Any:
    from airflow.providers.amazon.aws.hooks.sagemaker import SageMakerHook

    return SageMakerHook(aws_conn_id=aws_conn_id())


def cloudwatch() -> Any:
    """A CloudWatch client on the connection (the rollback alarms)."""
    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    return AwsBaseHook(aws_conn_id=aws_conn_id(), client_type="cloudwatch").conn


def lambda_hook() -> Any:
    from airflow.providers.amazon.aws.hooks.lambda_function import LambdaHook

    return LambdaHook(aws_conn_id=aws_conn_id())


def step_functions() -> Any:
    """A Step Functions client (the provider's StepFunctionHook's connection)."""
    from airflow.providers.amazon.aws.hooks.step_function import StepFunctionHook

    return StepFunctionHook(aws_conn_id=aws_conn_id()).conn


def express_step_functions() -> Any:
    """A Step Functions client for StartSyncExecution: the connection's botocore config (a local one turns off
    the `sync-` host prefix) with a read timeout that outlasts an Express execution."""
    from airflow.providers.amazon.aws.hooks.step_function import StepFunctionHook
    from botocore.config import Config

    from include.scones.state_machine_deploy import SYNC_READ_TIMEOUT_S

    timeout = Config(read_timeout=SYNC_READ_TIMEOUT_S)
    configured = StepFunctionHook(aws_conn_id=aws_conn_id()).conn_config.botocore_config
    return StepFunctionHook(aws_conn_id=aws_conn_id(), config=configured.merge(timeout) if configured else timeout).conn
