"""File formats after the layout (hypercube, array spectra, pairs), extraction and curation.
Filled by the processing issue; empty until then."""
