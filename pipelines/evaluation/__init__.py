"""Evaluation: the report against the baselines, router metrics, off-policy estimators and the audit."""
