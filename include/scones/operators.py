"""Provider operators as the DAGs need them, changed as little as possible."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.providers.amazon.aws.operators.sagemaker import SageMakerRegisterModelVersionOperator
from airflow.providers.standard.operators.hitl import ApprovalOperator

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
