"""One module per CLI command group that has grown past a few lines; ``cli.py`` registers them."""
