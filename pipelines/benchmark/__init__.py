"""Outcome collection (`tierroute benchmark`): the job, its runner and HTTP client, the call cache, the prompts file and the report."""
