"""The embedded local cloud: MiniStack (S3, Lambda, Step Functions, IAM, STS, Logs) plus our
own local SageMaker, both bound to 127.0.0.1. Only the Airflow connection points at it."""
