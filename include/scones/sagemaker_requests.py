"""Pure builders for every SageMaker request the training DAG sends (the `config=` of each provider operator).

Nothing here talks to AWS; the DAG's tasks call these at run time and tests check the dicts directly.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

from include.scones import rollout
from include.scones.records import CandidateMetadata, EvaluationResult, RunPlan

PROJECT_TAG = {"Key": "project", "Value": "scones-unlimited"}
ENDPOINT_TAG_KEY = "scones:endpoint"  # which endpoint a model or config was made for (teardown reads it)
VARIANT_NAME = "AllTraffic"
TRAINING_PROGRAM = "train.py"
INFERENCE_PROGRAM = "inference.py"
# Lines train.py prints; SageMaker turns them into CloudWatch metrics.
METRIC_DEFINITIONS = [
    {"Name": "train:loss", "Regex": r"train_loss=([0-9.]+)"},
    {"Name": "test:accuracy", "Regex": r"test_accuracy=([0-9.]+)"},
]


def run_name(run_id: str, run_after: datetime) -> str:
    """One id per DAG run, from which every resource name of the run is derived (31 chars)."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    return f"scones-{run_after:%Y%m%d-%H%M%S}-{digest}"


def _endpoint_tags(plan: RunPlan) -> list[dict[str, str]]:
    return [PROJECT_TAG, {"Key": ENDPOINT_TAG_KEY, "Value": plan.endpoint_name}]


def _encode_hyperparameters(values: dict[str, Any]) -> dict[str, str]:
    # The SageMaker SDK JSON-encodes every value; the training toolkit json.loads them back.
    return {key: json.dumps(value) for key, value in values.items()}


def _s3_channel(name: str, uri: str) -> dict[str, Any]:
    return {
        "ChannelName": name,
        "DataSource": {
            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}
        },
        "InputMode": "File",
    }


def training_job(plan: RunPlan, data_uri: str, code_uri: str) -> dict[str, Any]:
    """CreateTrainingJob for script mode: the framework image runs `train.py` from `sourcedir.tar.gz`."""
    params = plan.params
    return {
        "TrainingJobName": plan.name,
        "RoleArn": plan.role_arn,
        "AlgorithmSpecification": {
            "TrainingImage": plan.training_image,
            "TrainingInputMode": "File",
            "MetricDefinitions": METRIC_DEFINITIONS,
        },
        "HyperParameters": _encode_hyperparameters(
            params.hyperparameters()
            | {
                "sagemaker_program": TRAINING_PROGRAM,
                "sagemaker_submit_directory": code_uri,
                "sagemaker_region": plan.region,
                "sagemaker_container_log_level": 20,
            }
        ),
        "InputDataConfig": [_s3_channel("train", f"{data_uri}train/"), _s3_channel("test", f"{data_uri}test/")],
        "OutputDataConfig": {"S3OutputPath": plan.model_output_uri},
        "ResourceConfig": {"InstanceCount": 1, "InstanceType": params.training_instance_type, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": params.max_runtime_seconds},
        "Tags": [PROJECT_TAG],
    }


def inference_container(plan: RunPlan, model_data_url: str) -> dict[str, Any]:
    """The container serving `code/inference.py` from inside model.tar.gz (the PyTorch ≥ 1.2 layout)."""
    return {
        "Image": plan.inference_image,
        "ModelDataUrl": model_data_url,
        "Environment": {
            "SAGEMAKER_PROGRAM": INFERENCE_PROGRAM,
            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
            "SAGEMAKER_REGION": plan.region,
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
            "SAGEMAKER_MODEL_SERVER_WORKERS": str(plan.params.model_server_workers),
        },
    }


def model(plan: RunPlan, model_data_url: str) -> dict[str, Any]:
    """CreateModel for the evaluated artifact, which the batch transform scores."""
    return {
        "ModelName": plan.name,
        "ExecutionRoleArn": plan.role_arn,
        "PrimaryContainer": inference_container(plan, model_data_url),
        "Tags": _endpoint_tags(plan),
    }


def model_package(plan: RunPlan, result: EvaluationResult, model_data_url: str) -> dict[str, Any]:
    """The candidate's version in the Model Registry, as the provider's register operator takes it: its own
    arguments, and `extras`, which replace whole members of its CreateModelPackage request (its hard-coded
    text/csv content types among them). The run name is the ClientToken, so a retried task registers once."""
    container = inference_container(plan, model_data_url)
    instance_types = [plan.params.inference_instance_type]
    return {
        "image_uri": container["Image"],
        "model_url": model_data_url,
        "package_group_name": plan.model_package_group,
        "package_desc": f"{', '.join(plan.params.classes)} classifier from training job {result.training_job_name}",
        "extras": {
            "ClientToken": plan.name,
            "InferenceSpecification": {
                "Containers": [container],
                "SupportedContentTypes": ["image/png"],
                "SupportedResponseMIMETypes": ["application/json"],
                "SupportedRealtimeInferenceInstanceTypes": instance_types,
                "SupportedTransformInstanceTypes": instance_types,
            },
            "ModelMetrics": {
                "ModelQuality": {"Statistics": {"ContentType": "application/json", "S3Uri": result.evaluation_uri}}
            },
            "CustomerMetadataProperties": CandidateMetadata.of(plan, result).to_properties(),
        },
    }


def serving_model(plan: RunPlan, package_arn: str) -> dict[str, Any]:
    """CreateModel from the approved version: image, model data and environment come from the registry."""
    return {
        "ModelName": plan.serving_model_name,
        "ExecutionRoleArn": plan.role_arn,
        "PrimaryContainer": {"ModelPackageName": package_arn},
        "Tags": _endpoint_tags(plan),
    }


def transform_job(plan: RunPlan, test_images_uri: str, training_job_name: str) -> dict[str, Any]:
    """CreateTransformJob scoring every test image: `<image>.png` → `<output>/<image>.png.out`."""
    return {
        "TransformJobName": plan.transform_job_name,
        "ModelName": plan.name,
        "MaxConcurrentTransforms": 2,
        "BatchStrategy": "SingleRecord",
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": test_images_uri}},
            "ContentType": "image/png",
            "SplitType": "None",
            "CompressionType": "None",
        },
        "TransformOutput": {
            "S3OutputPath": plan.evaluation_output_uri(training_job_name) + "predictions/",
            "Accept": "application/json",
            "AssembleWith": "None",
        },
        "TransformResources": {"InstanceType": plan.params.inference_instance_type, "InstanceCount": 1},
        "Tags": [PROJECT_TAG],
    }


def endpoint_config(plan: RunPlan) -> dict[str, Any]:
    """CreateEndpointConfig with data capture of requests and responses for monitoring."""
    params = plan.params
    return {
        "EndpointConfigName": plan.name,
        "ProductionVariants": [
            {
                "VariantName": VARIANT_NAME,
                "ModelName": plan.serving_model_name,
                "InitialInstanceCount": 1,
                "InstanceType": params.inference_instance_type,
                "InitialVariantWeight": 1.0,
            }
        ],
        "DataCaptureConfig": {
            "EnableCapture": True,
            "InitialSamplingPercentage": params.capture_percentage,
            "DestinationS3Uri": plan.capture_uri,
            "CaptureOptions": [{"CaptureMode": "Input"}, {"CaptureMode": "Output"}],
            # image/png is listed nowhere, so it is stored BASE64; JSON responses are stored as JSON text.
            "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]},
        },
        "Tags": _endpoint_tags(plan),
    }


def endpoint(plan: RunPlan) -> dict[str, Any]:
    """CreateEndpoint (the operator switches to UpdateEndpoint when it already exists), with the DeploymentConfig
    of the run's rollout Params: CreateEndpoint only stores it, and the update shifts traffic as it says."""
    params = plan.params
    alarms = rollout.alarm_names(plan.endpoint_name).all()
    return {
        "EndpointName": plan.endpoint_name,
        "EndpointConfigName": plan.name,
        "DeploymentConfig": rollout.deployment_config(
            params.rollout, params.rollout_percent, params.bake_seconds, alarms
        ),
        "Tags": [PROJECT_TAG],
    }


def rollback_alarms(plan: RunPlan, latency_ms: float) -> list[dict[str, Any]]:
    """PutMetricAlarm requests for the alarms the endpoint's DeploymentConfig names, watching this run's config."""
    return rollout.alarm_requests(plan.endpoint_name, VARIANT_NAME, plan.name, latency_ms)
