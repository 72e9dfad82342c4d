"""Service behaviour of the local SageMaker: resource state and life cycles. No HTTP here."""
