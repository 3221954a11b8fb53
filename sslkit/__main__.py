"""``python -m sslkit ...`` (and ``torchrun --nproc_per_node=N -m sslkit train ...``)."""
import sys

from sslkit.cli import main

sys.exit(main())
