"""What one training run executes, besides the models: the config it resolves, MMEngine's Runner
and the study's hooks, resume, devices, the environment record and the test-record metric.
Every train stage in ``dvc.yaml`` depends on this folder as a whole."""
