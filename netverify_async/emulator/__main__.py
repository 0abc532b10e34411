"""``python -m netverify_async.emulator``: serve the emulator until interrupted."""

import sys

from ._cli import main

sys.exit(main())
