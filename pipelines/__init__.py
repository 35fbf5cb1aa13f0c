"""Jobs over outcome data: ingestion (validate + quarantine), the audit, and later training,
evaluation and retraining. Heavy libraries (datasets, pandas) load inside the jobs, not here."""

from tierroute.pipelines.data.ingest import IngestConfig, IngestResult, run_ingest
from tierroute.pipelines.data.records import OUTCOME_FIELDS, QUARANTINE_REASONS

__all__ = ["IngestConfig", "IngestResult", "run_ingest", "OUTCOME_FIELDS", "QUARANTINE_REASONS"]
