"""Dataset readers. Each `prepare_*` turns a source into the prepared format of `prepared.py`."""
