"""The virtual microscope: what the sample and reference cameras see for the bench's state."""
