"""Scorers of model answers: text (exact, choice, numeric, f1), JSON against a schema, code, and the judge."""
