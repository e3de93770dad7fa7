"""cnnlab: every claim of a lecture on CNNs, measured by a pipeline stage."""
