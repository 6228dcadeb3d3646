#!/usr/bin/env python
"""Train one GAN (or sweep many with -m). `python train.py --help` lists the config groups."""
from gan_ablate.cli import main

if __name__ == "__main__":
    main()
