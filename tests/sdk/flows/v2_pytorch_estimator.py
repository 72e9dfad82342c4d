"""SageMaker Python SDK v2, as published: PyTorch(...).fit(logs) → PyTorch.attach → deploy with data capture →
predict a PNG → transformer().transform() → update_endpoint → delete_endpoint, with the project's include/model.

Run with the v2 venv's python and the local cloud's environment (`. .localcloud/env`); tests/sdk does. The test
then reads the captured request and the transform's output from S3 itself."""

from __future__ import annotations

import tempfile
from pathlib import Path

import sagemaker
from common import (
    DATASET,
    HYPERPARAMETERS,
    INSTANCE_TYPE,
    MODEL_CODE,
    PYTHON_VERSION,
    PYTORCH_VERSION,
    TRAINING_ROLE,
    arguments,
    default_bucket,
    recorded_session,
    rows_by_label,
    sample_png,
    write_channels,
    write_result,
)
from sagemaker.deserializers import JSONDeserializer
from sagemaker.model_monitor import DataCaptureConfig
from sagemaker.pytorch import PyTorch
from sagemaker.serializers import IdentitySerializer

TRANSFORM_IMAGES = 2  # per class


def main() -> None:
    args = arguments()
    boto_session = recorded_session(args.out)
    session = sagemaker.Session(boto_session=boto_session, default_bucket=default_bucket(boto_session))
    bucket = session.default_bucket()
    prefix = f"{args.name}-v2"
    with tempfile.TemporaryDirectory() as scratch:
        channels = write_channels(Path(scratch))
        inputs = {
            split: session.upload_data(str(path), key_prefix=f"{prefix}/data/{split}")
            for split, path in channels.items()
        }
    estimator = PyTorch(
        entry_point="train.py",
        source_dir=str(MODEL_CODE),
        framework_version=PYTORCH_VERSION,
        py_version=PYTHON_VERSION,
        instance_type=INSTANCE_TYPE,
        instance_count=1,
        role=TRAINING_ROLE,  # a name: the SDK resolves it with iam:GetRole
        hyperparameters=HYPERPARAMETERS,
        base_job_name=prefix,
        sagemaker_session=session,
    )
    estimator.fit(inputs, logs="All")  # uploads sourcedir.tar.gz with ServerSideEncryption=aws:kms
    job_name = estimator.latest_training_job.name

    attached = PyTorch.attach(job_name, sagemaker_session=session)
    capture_uri = f"s3://{bucket}/{prefix}/data-capture"
    predictor = attached.deploy(
        initial_instance_count=1,
        instance_type=INSTANCE_TYPE,
        endpoint_name=prefix,
        entry_point="inference.py",  # the serving hooks; train.py stays the training entry point
        data_capture_config=DataCaptureConfig(
            enable_capture=True, sampling_percentage=100, destination_s3_uri=capture_uri
        ),
        serializer=IdentitySerializer(content_type="image/png"),
        deserializer=JSONDeserializer(),
    )
    prediction = predictor.predict(sample_png())

    with tempfile.TemporaryDirectory() as scratch:
        transform_input = session.upload_data(str(transform_images(Path(scratch))), key_prefix=f"{prefix}/batch-in")
    transform_output = f"s3://{bucket}/{prefix}/batch-out"
    transformer = attached.transformer(
        instance_count=1,
        instance_type=INSTANCE_TYPE,
        output_path=transform_output,
        accept="application/json",
        entry_point="inference.py",
    )
    transformer.transform(transform_input, content_type="image/png", wait=True, logs=False)

    first_config = session.sagemaker_client.describe_endpoint(EndpointName=prefix)["EndpointConfigName"]
    predictor.update_endpoint(initial_instance_count=1, instance_type="ml.m5.xlarge", wait=True)
    updated = session.sagemaker_client.describe_endpoint(EndpointName=prefix)
    after_update = predictor.predict(sample_png())
    predictor.delete_endpoint()  # and its current endpoint config
    predictor.delete_model()
    session.delete_endpoint_config(first_config)  # update_endpoint left the first one, as on AWS
    session.delete_model(transformer.model_name)
    write_result(
        args.out,
        {
            "training_job": job_name,
            "attached_model_data": attached.model_data,
            "endpoint": prefix,
            "prediction": prediction,
            "capture_uri": capture_uri,
            "transform_job": transformer.latest_transform_job.name,
            "transform_input": transform_input,
            "transform_output": transform_output,
            "endpoint_configs": [first_config, updated["EndpointConfigName"]],
            "updated_status": updated["EndpointStatus"],
            "prediction_after_update": after_update,
        },
    )


def transform_images(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for rows in rows_by_label().values():
        for row in rows[-TRANSFORM_IMAGES:]:
            name = row.split("\t")[2]
            (directory / name).write_bytes((DATASET / "train" / name).read_bytes())
    return directory


if __name__ == "__main__":
    main()
