"""latentstudio.identity: the identity mapper (Nitzan et al. 2020) — identity transfer,
disentangled identity/attribute blending and de-identification.

Modules: ``mapper`` (network + weight file), ``data`` (measured training faces), ``losses``
(MS-SSIM, latent discriminator, surrogate nets), ``train`` (resumable training), ``api``
(transfer / blend / deidentify on W+ codes), ``commands`` (CLI).
"""
