"""The ``metascan`` command: wires each package's sub-commands and nothing else."""
