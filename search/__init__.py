"""hpsearch.search: the system (CLI, study files, training, search, review, benchmarks)."""
