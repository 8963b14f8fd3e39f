"""The shape of the generator's latent codes, in one place (no dependencies).

A W code is one style vector (W_DIM,); a W+ code (NUM_SLOTS, W_DIM) gives each of the synthesis
network's 23 styled layers its own (``latentstudio.models.mobilestylegan`` lists the slots).
"""

NUM_SLOTS = 23
W_DIM = 512
W_PLUS = (NUM_SLOTS, W_DIM)

__all__ = ["NUM_SLOTS", "W_DIM", "W_PLUS"]
