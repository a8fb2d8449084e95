import sys

from fedi.cli import main

sys.exit(main())
