"""`python -m hpsearch.search.cli`: the same as the `hpsearch` console script."""

from hpsearch.search.cli import main

main()
