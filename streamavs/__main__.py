import sys

from streamavs.cli import main

sys.exit(main())
