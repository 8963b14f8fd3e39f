"""latentstudio.identity: the identity mapper (Nitzan et al. 2020) — identity transfer,
disentangled identity/attribute blending and de-identification.

Modules: ``mapper`` (network + weight file), ``data`` (measured training faces), ``losses``
(MS-SSIM, latent discriminator, surrogate nets), ``train`` (resumable training), ``api``
(transfer / blend / deidentify on W+ codes), ``commands`` (CLI).
"""

#: refine's default number of steps (CLI ``--refine``, the app's Refine button), kept here so
#: the CLI can read it without importing torch: on the 14 real pairs 40 steps gave OpenFace 0.728
#: to A, 60 gave 0.712 with yaw 1.7 → 1.2° and the mouth 3.0 → 2.8 % (bench/RESULTS.md);
#: ~0.1 s a step on 2 CPU cores
REFINE_STEPS = 60
