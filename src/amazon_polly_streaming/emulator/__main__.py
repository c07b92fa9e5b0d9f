import sys

# The emulator's command line lives with the other commands; this keeps `python -m amazon_polly_streaming.emulator`.
from ..cli.emulator import main

sys.exit(main())
