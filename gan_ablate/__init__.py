"""Which GAN training tricks actually help? Hydra-configured ablations with evidence (README.md)."""
