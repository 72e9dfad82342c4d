"""Test DAG: the amazon provider's SageMaker operators and sensors, unchanged, against whatever the AWS
connection points at. Params pick the run's resource-name suffix and the "answer" the tiny
script-mode job learns, so two runs show create and then blue/green update."""

from __future__ import annotations

import json

import pendulum
from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerEndpointConfigOperator,
    SageMakerEndpointOperator,
    SageMakerModelOperator,
    SageMakerTrainingOperator,
)
from airflow.providers.amazon.aws.sensors.sagemaker import SageMakerEndpointSensor, SageMakerTrainingSensor
from airflow.sdk import DAG, Param, chain

BUCKET = "scones-provider-test"
ROLE_ARN = "arn:aws:iam::000000000000:role/scones-sagemaker-execution"
TRAINING_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-training:2.5-cpu-py311"
INFERENCE_IMAGE = "763104351884.dkr.ecr.us-east-1.amazonaws.com/pytorch-inference:2.5-cpu-py311"
JOB = "provider-job-{{ params.suffix }}"
MODEL = "provider-model-{{ params.suffix }}"
CONFIG = "provider-config-{{ params.suffix }}"

with DAG(
    dag_id="localcloud_provider_roundtrip",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    params={"suffix": Param("a", type="string"), "answer": Param("first", type="string")},
):
    train = SageMakerTrainingOperator(
        task_id="train",
        print_log=True,
        check_interval=2,
        config={
            "TrainingJobName": JOB,
            "RoleArn": ROLE_ARN,
            "AlgorithmSpecification": {"TrainingImage": TRAINING_IMAGE, "TrainingInputMode": "File"},
            "HyperParameters": {
                "answer": '"{{ params.answer }}"',
                "sagemaker_program": json.dumps("train.py"),
                "sagemaker_submit_directory": json.dumps(f"s3://{BUCKET}/code/sourcedir.tar.gz"),
            },
            "InputDataConfig": [
                {
                    "ChannelName": "train",
                    "DataSource": {
                        "S3DataSource": {
                            "S3DataType": "S3Prefix",
                            "S3Uri": f"s3://{BUCKET}/data/train/",
                            "S3DataDistributionType": "FullyReplicated",
                        }
                    },
                }
            ],
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
            "ResourceConfig": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 5},
            "StoppingCondition": {"MaxRuntimeInSeconds": 600},
        },
    )
    model = SageMakerModelOperator(
        task_id="model",
        config={
            "ModelName": MODEL,
            "ExecutionRoleArn": ROLE_ARN,
            "PrimaryContainer": {
                "Image": INFERENCE_IMAGE,
                "ModelDataUrl": f"s3://{BUCKET}/output/{JOB}/output/model.tar.gz",
            },
        },
    )
    endpoint_config = SageMakerEndpointConfigOperator(
        task_id="endpoint_config",
        config={
            "EndpointConfigName": CONFIG,
            "ProductionVariants": [
                {
                    "VariantName": "AllTraffic",
                    "ModelName": MODEL,
                    "InitialInstanceCount": 1,
                    "InstanceType": "ml.m5.large",
                    "InitialVariantWeight": 1.0,
                }
            ],
        },
    )
    endpoint = SageMakerEndpointOperator(
        task_id="endpoint",
        config={"EndpointName": "provider-endpoint", "EndpointConfigName": CONFIG},
        check_interval=1,
    )
    training_done = SageMakerTrainingSensor(task_id="training_done", job_name=JOB, print_log=False, poke_interval=1)
    endpoint_in_service = SageMakerEndpointSensor(
        task_id="endpoint_in_service", endpoint_name="provider-endpoint", poke_interval=1
    )
    chain(train, training_done, model, endpoint_config, endpoint, endpoint_in_service)
