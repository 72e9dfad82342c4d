"""SageMaker Python SDK v3, as published: ModelTrainer with SourceCode (the project's include/model) → train(wait,
logs) → Model, EndpointConfig and Endpoint from sagemaker.core.resources → invoke with a PNG → delete.

Run with the v3 venv's python and the local cloud's environment (`. .localcloud/env`); tests/sdk does. On AWS the
same code runs with AWS's environment instead."""

from __future__ import annotations

import tempfile
from pathlib import Path

from common import (
    HYPERPARAMETERS,
    INSTANCE_TYPE,
    MODEL_CODE,
    PYTHON_VERSION,
    PYTORCH_VERSION,
    SERVING_ROLE,
    TRAINING_ROLE,
    arguments,
    default_bucket,
    recorded_session,
    sample_png,
    write_channels,
    write_result,
)
from sagemaker.core import image_uris
from sagemaker.core.helper.session_helper import Session
from sagemaker.core.resources import Endpoint, EndpointConfig, Model
from sagemaker.core.shapes import ContainerDefinition, ProductionVariant
from sagemaker.train import ModelTrainer
from sagemaker.train.configs import Compute, InputData, SourceCode


def main() -> None:
    args = arguments()
    boto_session = recorded_session(args.out)
    session = Session(boto_session=boto_session, default_bucket=default_bucket(boto_session))
    region = session.boto_region_name

    def image(scope: str) -> str:
        return image_uris.retrieve(
            "pytorch",
            region=region,
            version=PYTORCH_VERSION,
            py_version=PYTHON_VERSION,
            instance_type=INSTANCE_TYPE,
            image_scope=scope,
        )

    trainer = ModelTrainer(
        training_image=image("training"),
        source_code=SourceCode(source_dir=str(MODEL_CODE), entry_script="train.py"),
        role=TRAINING_ROLE,  # a name: the SDK resolves it with iam:GetRole and checks it can train
        compute=Compute(instance_type=INSTANCE_TYPE, instance_count=1),
        hyperparameters=HYPERPARAMETERS,
        base_job_name=f"{args.name}-v3",
        sagemaker_session=session,
    )
    with tempfile.TemporaryDirectory() as scratch:
        channels = write_channels(Path(scratch))
        trainer.train(
            input_data_config=[InputData(channel_name=name, data_source=str(path)) for name, path in channels.items()],
            wait=True,
            logs=True,
        )
    job = trainer._latest_training_job  # the SDK keeps the job it started here (no public accessor in 3.27)
    model_data = job.model_artifacts.s3_model_artifacts

    name = f"{args.name}-v3"
    serving_role = boto_session.client("iam").get_role(RoleName=SERVING_ROLE)["Role"]["Arn"]
    model = Model.create(
        model_name=name,
        primary_container=ContainerDefinition(image=image("inference"), model_data_url=model_data),
        execution_role_arn=serving_role,
        session=boto_session,
    )
    variant = ProductionVariant(
        variant_name="AllTraffic", model_name=name, instance_type=INSTANCE_TYPE, initial_instance_count=1
    )
    config = EndpointConfig.create(endpoint_config_name=name, production_variants=[variant], session=boto_session)
    endpoint = Endpoint.create(endpoint_name=name, endpoint_config_name=name, session=boto_session)
    endpoint.wait_for_status("InService")
    response = endpoint.invoke(body=sample_png(), content_type="image/png", accept="application/json")
    body = response.body.read() if hasattr(response.body, "read") else response.body
    endpoint.delete()
    config.delete()
    model.delete()
    write_result(
        args.out,
        {
            "training_job": job.training_job_name,
            "training_status": job.training_job_status,
            "model_data": model_data,
            "endpoint": name,
            "prediction": body.decode() if isinstance(body, bytes) else body,
        },
    )


if __name__ == "__main__":
    main()
