"""Generic helpers every package may use: atomic writes, the output policy, the checks on
numbers that enter from a command line or a config. Imports nothing of the project."""
