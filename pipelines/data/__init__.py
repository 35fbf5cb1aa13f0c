"""Outcome data: records, ingestion with quarantine, format adapters, the synthetic workload and the routing dataset."""
