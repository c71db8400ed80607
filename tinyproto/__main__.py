import sys

from tinyproto.cli import main

sys.exit(main())
