"""Lifecycle: retraining on new logs, the promotion gate and rollback, and drift."""
