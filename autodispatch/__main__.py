import sys

from autodispatch.cli import main

sys.exit(main())
