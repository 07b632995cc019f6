"""A study: its file (spec), its stores (Optuna storage, MLflow tracking), the
objective that turns a trial into a training run, the runner, workers and gc."""
