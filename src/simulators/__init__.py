"""Device emulators, the virtual microscope and spectral models. Filled by the instruments and
virtual-microscope issues; empty until then."""
