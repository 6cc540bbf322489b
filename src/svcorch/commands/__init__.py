"""One use case per module. Never imports typer or rich."""
