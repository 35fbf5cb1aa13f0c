"""Training: the training job, family selection, MLflow tracking and the Dask engine."""
