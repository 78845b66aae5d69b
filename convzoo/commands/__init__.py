"""One module per CLI command: typed Typer functions that parse, validate and call the
library. Nothing here imports torch at module level, so ``convzoo --help`` stays instant.
"""
