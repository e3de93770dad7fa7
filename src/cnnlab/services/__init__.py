"""The shared stack a team points cnnlab at: PostgreSQL for MLflow's runs, a SeaweedFS S3 store
for artifacts and DVC's remote, and `mlflow server` in front of both (`make services`).

Real servers, started as background processes on 127.0.0.1, with all their state under one
git-ignored folder and credentials generated on first start. Settings: conf/services.yaml.
"""
