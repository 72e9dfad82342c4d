"""Local SageMaker: a SageMaker control plane and runtime that really trains, hosts, captures
and batch-transforms, speaking AWS's wire protocols.

Layers (moto-style): routes (URL/target -> operation) -> responses (protocol parsing and
shaping) -> models (state and behaviour, no HTTP) -> runners (processes for training and
serving). Exceptions carry one AWS error code each."""
