"""Provider operators as the DAGs need them, changed as little as possible."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.sagemaker import (
    SageMakerEndpointOperator,
    SageMakerRegisterModelVersionOperator,
)
from airflow.providers.standard.operators.hitl import ApprovalOperator
from airflow.sdk.exceptions import AirflowFailException

from include.scones import registry, rollout
from include.scones.review import ANSWER_KEY

if TYPE_CHECKING:
    from airflow.sdk import Context


class RegisterModelVersionOperator(SageMakerRegisterModelVersionOperator):
    """The provider's operator with `extras` templated as well: the registration's metrics, metadata and
    ClientToken are known only at run time (`sagemaker_requests.model_package`), so they arrive as an XCom."""

    template_fields: Sequence[str] = (*SageMakerRegisterModelVersionOperator.template_fields, "extras")


class ReviewOperator(ApprovalOperator):
    """Airflow's ApprovalOperator, which also keeps the answer under the XCom key `answer`. On Reject it skips its
    downstream task by raising DownstreamTasksSkipped (Airflow 3), so its return value never reaches XCom; the
    rejection still needs who answered and their note (include/scones/review.py reads this)."""

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if "error" not in event:  # a response, or the defaults applied at the timeout (no reviewer)
            answer = {k: event.get(k) for k in ("chosen_options", "params_input", "responded_by_user")}
            context["ti"].xcom_push(key=ANSWER_KEY, value=answer)
        return super().execute_complete(context, event)


class GuardedEndpointOperator(SageMakerEndpointOperator):
    """The provider's endpoint operator, failing when SageMaker's deployment guardrails rolled the update back.
    Its waiter ends on InService either way; after a rollback the endpoint runs the old config, and SageMaker's
    FailureReason names the alarm. The version that was rolled back is then Rejected with that reason, and the
    failure is final (no retry: the same version would trip the same alarm)."""

    template_fields: Sequence[str] = (*SageMakerEndpointOperator.template_fields, "model_package_arn")

    def __init__(self, *, model_package_arn: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.model_package_arn = model_package_arn

    def execute(self, context: Context) -> dict:
        return self._settle(super().execute(context))

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict:
        return self._settle(super().execute_complete(context, event))  # deferrable=True ends here

    def _settle(self, result: dict) -> dict:
        asked = self.config.get("Endpoint", self.config)["EndpointConfigName"]
        try:
            rollout.check_deployed(result["Endpoint"], asked)
        except rollout.RolledBack as rolled_back:
            why = result["Endpoint"].get("FailureReason") or "SageMaker gave no reason"
            reason = f"Rolled back by the deployment guardrails: {why}"
            registry.settle(self.hook.conn, self.model_package_arn, registry.REJECTED, reason, "guardrails")
            raise AirflowFailException(str(rolled_back)) from rolled_back
        self.log.info("endpoint %s now runs %s", result["Endpoint"]["EndpointName"], asked)
        return result
