"""Built-in experiment trackers, chosen with ``--tracker``: MLflow (``harness[mlflow]``) and Weights &
Biases (``harness[wandb]``). Each module registers its tracker and imports its package only when the
tracker is used, so it loads where the package is not installed."""
