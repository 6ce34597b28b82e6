"""Entry points and the terminal UI."""
