"""Hyperparameter search: Hydra's Optuna sweeper on any stage's config, one study per search.

- `sweeper.StudySweeperImpl` (conf/hydra/sweeper/study.yaml): Hydra's Optuna sweeper, with the
  study kept in an RDB beside the tracking store, resumed to its total of trials, and its best
  trial logged on the MLflow parent run of its trials;
- `storage`: where a study lives and how it is opened;
- `winner`: the best trial written as a new experiment file (`python -m cnnlab search-best`).
"""
