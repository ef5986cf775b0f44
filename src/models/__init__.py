"""Encoders, the contrastive model, training, evaluation and inverse design. Filled by the model
issue; empty until then."""
