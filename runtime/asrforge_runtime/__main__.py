import sys

from asrforge_runtime.cli import main

sys.exit(main())
